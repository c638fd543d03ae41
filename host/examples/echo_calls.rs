//! The Hearth side of `bench/side-by-side.sh`: calls `ping` of the bundled
//! echo plugin with `{"msg":"hi"}` through `Runtime::call`, in process, and
//! prints one JSON line per mode:
//!
//! - `warm`: the plugin keeps warm instances (`warm_instances = 4`);
//! - `fresh`: a fresh instance per call, the default.
//!
//! Timing is the same as the Extism side (`bench/extism/src/main.rs`): a
//! warm-up round, then rounds of a fixed length; the median round's mean
//! time per call is reported with the fastest and slowest rounds. Calls
//! run one after another on a tokio runtime, as a node runs them.
//!
//! `cargo run --release -p hearth-host --example echo_calls [SECONDS_PER_ROUND] [ROUNDS]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_host::call::CallContext;
use hearth_host::config::NodeConfig;
use hearth_host::ops::Node;
use hearth_registry::StackFile;

const INPUT: &str = r#"{"msg":"hi"}"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let round: f64 = args.next().map_or(0.5, |s| s.parse().expect("seconds"));
    let rounds: usize = args.next().map_or(10, |s| s.parse().expect("rounds"));
    let round = Duration::from_secs_f64(round);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (mode, warm) in [("warm", true), ("fresh", false)] {
        let node = start(&rt, &dir.path().join(mode), warm);
        let rounds = rt.block_on(measure(&node, round, rounds));
        println!(
            r#"{{"runtime":"hearth","mode":"{mode}","median_us":{:.3},"min_us":{:.3},"max_us":{:.3},"rounds":{}}}"#,
            rounds[rounds.len() / 2],
            rounds[0],
            rounds[rounds.len() - 1],
            rounds.len()
        );
    }
}

fn start(rt: &tokio::runtime::Runtime, dir: &Path, warm: bool) -> Arc<Node> {
    let stack = format!(
        "[node]\ndata_dir = {:?}\n[plugins.echo]\nwarm_instances = {}\n",
        dir.display().to_string(),
        if warm { 4 } else { 0 }
    );
    let stack = StackFile::parse(&stack, Path::new("echo_calls")).unwrap();
    let config = NodeConfig::from_stack(stack, None).unwrap();
    rt.block_on(Node::start(&config)).unwrap()
}

/// Rounds of `round` each after a warm-up of one round; µs per call of
/// every round, sorted.
async fn measure(node: &Arc<Node>, round: Duration, rounds: usize) -> Vec<f64> {
    let plugin = node.plugins()["echo"].clone();
    let resources = node.resources().clone();
    let mut results = Vec::with_capacity(rounds);
    for i in 0..=rounds {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < round {
            for _ in 0..16 {
                let ctx = CallContext::internal(Instant::now() + Duration::from_secs(5));
                let out = node
                    .runtime()
                    .call(&plugin, resources.clone(), "ping", INPUT, ctx)
                    .await
                    .unwrap();
                std::hint::black_box(out);
            }
            calls += 16;
        }
        if i > 0 {
            results.push(start.elapsed().as_secs_f64() * 1e6 / calls as f64);
        }
    }
    results.sort_by(f64::total_cmp);
    results
}
