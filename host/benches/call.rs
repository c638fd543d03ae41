//! In-process call path, without the socket:
//!
//! - `wasm_boundary/warm`: `Runtime::call` into a warm `echo` instance —
//!   the cost of crossing into WebAssembly and back (lift, lower, guest
//!   JSON decode/encode), nothing else;
//! - `wasm_boundary/fresh`: the same with a fresh instance per call;
//! - `node_call/*`: `Node::call` (path parsing, routing, schema validation,
//!   deadline) into a warm instance, a fresh one, and the native
//!   `/node/host/echo`.
//!
//! Run with `cargo bench -p hearth-host --bench call`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hearth_host::call::{CallContext, CallRequest, Door, Identity, OperationEnv};
use hearth_host::config::NodeConfig;
use hearth_host::ops::Node;
use hearth_registry::StackFile;

fn start(rt: &tokio::runtime::Runtime, dir: &Path, warm: bool) -> Arc<Node> {
    let stack = format!(
        "[node]\ndata_dir = {:?}\n[plugins.echo]\nwarm_instances = {}\n",
        dir.display().to_string(),
        if warm { 4 } else { 0 }
    );
    let stack = StackFile::parse(&stack, Path::new("bench")).unwrap();
    let config = NodeConfig::from_stack(stack, None).unwrap();
    rt.block_on(Node::start(&config)).unwrap()
}

fn request(path: &str) -> CallRequest {
    CallRequest::from_client(
        Door::Socket,
        Identity::node(),
        path.to_owned(),
        r#"{"msg":"hi"}"#.to_owned(),
    )
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let warm = start(&rt, &dir.path().join("warm"), true);
    let fresh = start(&rt, &dir.path().join("fresh"), false);

    let mut group = c.benchmark_group("wasm_boundary");
    for (name, node) in [("warm", &warm), ("fresh", &fresh)] {
        let plugin = node.plugins()["echo"].clone();
        let resources = node.resources().clone();
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let ctx = CallContext::internal(Instant::now() + Duration::from_secs(5));
                let resources = resources.clone();
                let plugin = plugin.clone();
                let node = node.clone();
                async move {
                    node.runtime()
                        .call(&plugin, resources, "ping", r#"{"msg":"hi"}"#, ctx)
                        .await
                        .unwrap()
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("node_call");
    for (name, node, path) in [
        ("warm", &warm, "/node/echo/ping"),
        ("fresh", &fresh, "/node/echo/ping"),
        ("native", &warm, "/node/host/echo"),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let node = node.clone();
                async move { node.call(request(path)).await.unwrap() }
            })
        });
    }
    group.finish();
}

criterion_group!(call, benches);
criterion_main!(call);
