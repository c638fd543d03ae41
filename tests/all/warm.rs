//! Warm instances: opt-in reuse across calls, dropped after a trap; fresh
//! instances stay the default.

use hearth_tests::{TestNode, misbehave_plugin_dir};

fn count(node: &TestNode) -> u64 {
    node.cli(&["call", "/node/misbehave/count"]).ok_json()["calls"]
        .as_u64()
        .unwrap()
}

#[test]
fn fresh_instances_are_the_default() {
    let dir = tempfile::tempdir().unwrap();
    misbehave_plugin_dir(dir.path());
    let node = TestNode::start_with_stack_in(dir, "[plugins.misbehave]\npath = \"misbehave\"\n");
    assert_eq!([count(&node), count(&node), count(&node)], [1, 1, 1]);
    let plugins = node.cli(&["plugins", "--json"]).ok_json();
    assert_eq!(plugins[0]["limits"]["warm_instances"], 0);
}

fn stains(node: &TestNode, op: &str, kib: u32) -> u64 {
    let input = format!(r#"{{"marker":{MARKER},"kib":{kib}}}"#);
    let path = format!("/node/misbehave/{op}");
    node.cli(&["call", &path, &input]).ok_json()["found"]
        .as_u64()
        .unwrap()
}

/// An 8-byte pattern no program writes by chance.
const MARKER: u64 = 0x5eed_f00d_dead_beef;

#[test]
fn a_fresh_instance_sees_nothing_an_earlier_call_wrote_anywhere_in_memory() {
    // The pool resets only the pages an instance wrote (pagemap scan) and
    // keeps 1 MiB resident per slot: stain static data, the stack, heap
    // inside the kept-resident prefix and 2 MiB of heap beyond it, then
    // look at every byte of a new instance's memory.
    let dir = tempfile::tempdir().unwrap();
    misbehave_plugin_dir(dir.path());
    let node = TestNode::start_with_stack_in(
        dir,
        "[limits]\nmax_instances = 2\n[plugins.misbehave]\npath = \"misbehave\"\n",
    );
    // What a call finds of its own input on its stack.
    let baseline = stains(&node, "scan", 0);
    for kib in [0, 64, 2048] {
        let written = stains(&node, "stain", kib);
        assert!(
            written > baseline + 500,
            "stained {written} words with {kib} KiB of heap"
        );
        // With a pool of two instances, the next calls reuse the same slots.
        for _ in 0..3 {
            assert_eq!(
                stains(&node, "scan", 0),
                baseline,
                "after a stain of {kib} KiB"
            );
        }
    }
}

#[test]
fn the_memory_scan_does_find_what_a_warm_instance_kept() {
    // The same scan against a warm instance: proof that the check above
    // would see a stain that survived.
    let dir = tempfile::tempdir().unwrap();
    misbehave_plugin_dir(dir.path());
    let node = TestNode::start_with_stack_in(
        dir,
        "[plugins.misbehave]\npath = \"misbehave\"\nwarm_instances = 1\n",
    );
    let baseline = stains(&node, "scan", 0);
    stains(&node, "stain", 64);
    let seen = stains(&node, "scan", 0);
    assert!(seen > baseline + 500, "the scan found {seen} words");
}

#[test]
fn warm_instances_are_reused_until_a_trap() {
    let dir = tempfile::tempdir().unwrap();
    misbehave_plugin_dir(dir.path());
    let node = TestNode::start_with_stack_in(
        dir,
        "[plugins.misbehave]\npath = \"misbehave\"\nwarm_instances = 2\n",
    );
    // Sequential calls reuse the one idle instance: its counter survives.
    assert_eq!([count(&node), count(&node), count(&node)], [1, 2, 3]);
    let plugins = node.cli(&["plugins", "--json"]).ok_json();
    assert_eq!(plugins[0]["limits"]["warm_instances"], 2);
    assert_eq!(plugins[0]["limits"]["warm_idle"], 1);
    // A plugin error that is not a trap keeps the instance…
    assert_eq!(node.cli(&["call", "/node/misbehave/cycle"]).code(), 1);
    // …a trap throws it away: the next call starts from a fresh instance.
    assert_eq!(node.cli(&["call", "/node/misbehave/trap"]).code(), 1);
    assert_eq!(count(&node), 1);
    assert_eq!(count(&node), 2);
}

#[test]
fn a_manifest_may_ask_for_warm_instances() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = misbehave_plugin_dir(dir.path());
    let manifest = std::fs::read_to_string(plugin.join("plugin.toml")).unwrap();
    std::fs::write(
        plugin.join("plugin.toml"),
        format!("{manifest}\n[runtime]\nreuse_instances = true\n"),
    )
    .unwrap();
    let node = TestNode::start_with_stack_in(dir, "[plugins.misbehave]\npath = \"misbehave\"\n");
    assert_eq!([count(&node), count(&node)], [1, 2]);
    let plugins = node.cli(&["plugins", "--json"]).ok_json();
    assert_eq!(plugins[0]["limits"]["warm_instances"], 8);
}
