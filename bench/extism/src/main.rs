//! The Extism side of `bench/side-by-side.sh`: calls `ping` of the echo
//! plugin (`plugin/`, built for wasm32-wasip1) with `{"msg":"hi"}`, in
//! process, WASI on, and prints one JSON line per mode:
//!
//! - `warm`: one `Plugin`, called again and again;
//! - `fresh`: a new `Plugin` per call from a `CompiledPlugin` made once
//!   (the module is compiled once; each call instantiates it), dropped
//!   after the call — Extism's counterpart of Hearth's fresh instance.
//!
//! Timing is the same as Hearth's side (`host/examples/echo_calls.rs`):
//! a warm-up, then rounds of a fixed length; the median round's mean time
//! per call is reported, with the fastest and slowest rounds.
//!
//! Usage: `extism-echo-bench PLUGIN.wasm [SECONDS_PER_ROUND] [ROUNDS]`.

use std::time::{Duration, Instant};

use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};

const INPUT: &str = r#"{"msg":"hi"}"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let wasm = args
        .next()
        .expect("usage: extism-echo-bench PLUGIN.wasm [SECONDS_PER_ROUND] [ROUNDS]");
    let round: f64 = args.next().map_or(0.5, |s| s.parse().expect("seconds"));
    let rounds: usize = args.next().map_or(10, |s| s.parse().expect("rounds"));
    let round = Duration::from_secs_f64(round);

    let manifest = Manifest::new([Wasm::file(&wasm)]);
    let builder = || PluginBuilder::new(manifest.clone()).with_wasi(true);

    let mut warm = builder().build().expect("plugin");
    let out = warm.call::<&str, String>("ping", INPUT).expect("call");
    assert_eq!(out, INPUT, "the plugin must echo its input");
    report(
        "warm",
        measure(round, rounds, || {
            let out: String = warm.call("ping", INPUT).expect("call");
            std::hint::black_box(out);
        }),
    );

    let compiled = CompiledPlugin::new(builder()).expect("compile");
    report(
        "fresh",
        measure(round, rounds, || {
            let mut plugin = Plugin::new_from_compiled(&compiled).expect("instantiate");
            let out: String = plugin.call("ping", INPUT).expect("call");
            std::hint::black_box(out);
        }),
    );
}

/// Rounds of `round` each after a warm-up of one round; µs per call of
/// every round, sorted.
fn measure(round: Duration, rounds: usize, mut call: impl FnMut()) -> Vec<f64> {
    let mut results = Vec::with_capacity(rounds);
    for i in 0..=rounds {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < round {
            for _ in 0..16 {
                call();
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

fn report(mode: &str, rounds: Vec<f64>) {
    println!(
        r#"{{"runtime":"extism","mode":"{mode}","median_us":{:.3},"min_us":{:.3},"max_us":{:.3},"rounds":{}}}"#,
        rounds[rounds.len() / 2],
        rounds[0],
        rounds[rounds.len() - 1],
        rounds.len()
    );
}
