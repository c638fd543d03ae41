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
