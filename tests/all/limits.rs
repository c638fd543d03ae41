//! A misbehaving plugin fails only its own call: traps, panics, endless
//! loops, memory bombs, unbounded recursion, env cycles and oversize
//! results each get a typed error within their deadline, and the node keeps
//! serving with its memory back under a bound.

use std::time::{Duration, Instant};

use hearth_host::client::{CallOptions, Client, ClientError};
use hearth_registry::ErrorCode;
use hearth_tests::{TestNode, misbehave_plugin_dir, rss_kib};

/// The misbehave plugin's limits in these tests.
const PLUGIN_TIMEOUT_MS: u64 = 1000;
const SPIN_TIMEOUT_MS: u64 = 300;
/// How late after its deadline a typed error may arrive.
const GRACE: Duration = Duration::from_millis(100);
/// Resident memory the node must be back under after the storm: its
/// baseline (~35 MiB) plus 1 MiB kept resident per pool slot used at the
/// peak (16 callers, up to 9 nested instances each for `cycle`), plus
/// allocator slack from the 10 MiB results.
const RSS_BOUND_MIB: u64 = 200;

fn start() -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    misbehave_plugin_dir(dir.path());
    let stack = format!(
        r#"
        [plugins.echo]
        [plugins.misbehave]
        path = "misbehave"
        memory_mib = 64
        timeout_ms = {PLUGIN_TIMEOUT_MS}
        operation_timeouts = {{ spin = {SPIN_TIMEOUT_MS} }}
        grants.env = ["/node/misbehave/cycle"]
        "#
    );
    TestNode::start_with_stack_in(dir, &stack)
}

async fn call(
    client: &Client,
    op: &str,
    input: &str,
) -> Result<serde_json::Value, hearth_registry::CallError> {
    match client
        .call_raw(
            &format!("/node/misbehave/{op}"),
            input,
            CallOptions::default(),
        )
        .await
    {
        Ok(reply) => Ok(reply.output),
        Err(ClientError::Call(err)) => Err(err),
        Err(other) => panic!("transport failure on {op}: {other}"),
    }
}

async fn echo_still_answers(client: &Client) {
    let reply = client
        .call("/node/echo/ping", &serde_json::json!({"msg": "still here"}))
        .await
        .unwrap();
    assert_eq!(reply.output["msg"], "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misbehaviour_gets_its_typed_error_in_time() {
    let node = start();
    let client = node.client().await;
    // (operation, input, expected code, text the message names, deadline)
    let cases: &[(&str, &str, ErrorCode, &str, u64)] = &[
        (
            "trap",
            "{}",
            ErrorCode::Trapped,
            "unreachable",
            PLUGIN_TIMEOUT_MS,
        ),
        (
            "panic",
            "{}",
            ErrorCode::Trapped,
            "misbehave: deliberate panic",
            PLUGIN_TIMEOUT_MS,
        ),
        (
            "spin",
            "{}",
            ErrorCode::Timeout,
            "operation_timeouts.spin",
            SPIN_TIMEOUT_MS,
        ),
        (
            "sleep",
            r#"{"ms":60000}"#,
            ErrorCode::Timeout,
            "timeout_ms",
            PLUGIN_TIMEOUT_MS,
        ),
        (
            "hog",
            "{}",
            ErrorCode::ResourceExhausted,
            "memory_mib",
            PLUGIN_TIMEOUT_MS,
        ),
        (
            "recurse",
            "{}",
            ErrorCode::Trapped,
            "stack overflow",
            PLUGIN_TIMEOUT_MS,
        ),
        (
            "cycle",
            "{}",
            ErrorCode::ResourceExhausted,
            "max_call_depth",
            PLUGIN_TIMEOUT_MS,
        ),
        (
            "flood",
            "{}",
            ErrorCode::ResourceExhausted,
            "max_output_bytes",
            PLUGIN_TIMEOUT_MS,
        ),
    ];
    for &(op, input, code, names, deadline_ms) in cases {
        let started = Instant::now();
        let err = call(&client, op, input).await.expect_err(op);
        let elapsed = started.elapsed();
        assert_eq!(err.code, code, "{op}: {}", err.message);
        assert!(err.message.contains(names), "{op}: {}", err.message);
        assert!(
            elapsed <= Duration::from_millis(deadline_ms) + GRACE,
            "{op} took {elapsed:?}, deadline {deadline_ms} ms"
        );
        echo_still_answers(&client).await;
    }
    // A caller may shorten a deadline, never extend it.
    let started = Instant::now();
    let options = CallOptions {
        timeout: Some(Duration::from_secs(60)),
        metadata: vec![],
    };
    let err = client
        .call_raw("/node/misbehave/spin", "{}", options)
        .await
        .unwrap_err();
    assert_eq!(err.call_error().unwrap().code, ErrorCode::Timeout);
    assert!(started.elapsed() <= Duration::from_millis(SPIN_TIMEOUT_MS) + GRACE);
    let options = CallOptions {
        timeout: Some(Duration::from_millis(50)),
        metadata: vec![],
    };
    let err = client
        .call_raw("/node/misbehave/spin", "{}", options)
        .await
        .unwrap_err();
    assert_eq!(err.call_error().unwrap().code, ErrorCode::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_bad_calls_leave_the_node_serving_and_its_memory_bounded() {
    let node = start();
    let client = std::sync::Arc::new(node.client().await);
    let baseline = rss_kib(node.pid());
    let ops = [
        "trap", "panic", "hog", "recurse", "cycle", "flood", "spin", "ok", "count", "echo",
    ];
    let mut tasks = Vec::new();
    // 16 callers, 1000 calls in all, bad and good interleaved.
    for worker in 0..16u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut good = 0;
            for i in 0..(1000 / 16 + u64::from(worker < 1000 % 16)) {
                let op = ops[((worker + i * 7) % ops.len() as u64) as usize];
                let result = match op {
                    "echo" => client
                        .call("/node/echo/ping", &serde_json::json!({"msg": "x"}))
                        .await
                        .map(|r| r.output),
                    // Short caller deadline so the loops do not dominate the run.
                    "spin" => {
                        let options = CallOptions {
                            timeout: Some(Duration::from_millis(20)),
                            metadata: vec![],
                        };
                        client
                            .call_raw("/node/misbehave/spin", "{}", options)
                            .await
                            .map(|r| r.output)
                    }
                    _ => client
                        .call_raw(
                            &format!("/node/misbehave/{op}"),
                            "{}",
                            CallOptions::default(),
                        )
                        .await
                        .map(|r| r.output),
                };
                match (op, result) {
                    ("ok" | "count" | "echo", Ok(_)) => good += 1,
                    ("ok" | "count" | "echo", Err(e)) => panic!("good call {op} failed: {e}"),
                    (_, Ok(out)) => panic!("bad call {op} succeeded: {out}"),
                    (_, Err(ClientError::Call(_))) => {}
                    (_, Err(e)) => panic!("transport failure on {op}: {e}"),
                }
            }
            good
        }));
    }
    let mut good = 0;
    for task in tasks {
        good += task.await.unwrap();
    }
    assert!(good >= 250, "{good} good calls");
    echo_still_answers(&client).await;
    let after = rss_kib(node.pid());
    eprintln!(
        "rss: baseline {} MiB, after 1000 mixed calls {} MiB",
        baseline >> 10,
        after >> 10
    );
    assert!(
        after >> 10 <= RSS_BOUND_MIB,
        "rss {} MiB over the {RSS_BOUND_MIB} MiB bound",
        after >> 10
    );
}

/// A node whose misbehave plugin may use kv, fresh or warm per call.
fn start_with_kv(warm: u32) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    misbehave_plugin_dir(dir.path());
    let stack = format!(
        r#"
        [plugins.misbehave]
        path = "misbehave"
        timeout_ms = {PLUGIN_TIMEOUT_MS}
        warm_instances = {warm}
        grants.kv = true
        grants.env = ["/node/misbehave/cycle"]
        "#
    );
    TestNode::start_with_stack_in(dir, &stack)
}

async fn peek(client: &Client, key: &str) -> serde_json::Value {
    call(client, "peek", &format!(r#"{{"key":"{key}"}}"#))
        .await
        .unwrap()["value"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_leaves_kv_as_it_was() {
    for warm in [0, 2] {
        let node = start_with_kv(warm);
        let client = node.client().await;
        // A successful call reads its own writes and keeps them.
        let done = call(&client, "scribble", r#"{"key":"kept-gone","then":"ok"}"#)
            .await
            .unwrap();
        assert_eq!(done["read_back"], "written");
        assert_eq!(done["keys"], serde_json::json!(["kept-gone"]));
        assert_eq!(peek(&client, "kept-gone").await, "written");
        // Failing, trapping, panicking or running out of time after
        // writing `kept` and deleting `kept-gone` changes nothing.
        for (then, code) in [
            ("error", ErrorCode::Failed),
            ("trap", ErrorCode::Trapped),
            ("panic", ErrorCode::Trapped),
            ("spin", ErrorCode::Timeout),
        ] {
            let err = call(
                &client,
                "scribble",
                &format!(r#"{{"key":"kept","then":"{then}"}}"#),
            )
            .await
            .unwrap_err();
            assert_eq!(err.code, code, "{err}");
            assert_eq!(
                peek(&client, "kept").await,
                serde_json::Value::Null,
                "after {then} (warm {warm})"
            );
            assert_eq!(
                peek(&client, "kept-gone").await,
                "written",
                "after {then} (warm {warm})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_says_whose_deadline_it_was() {
    let node = start();
    let client = node.client().await;
    let mine = client
        .call_raw(
            "/node/misbehave/sleep",
            r#"{"ms":3000}"#,
            CallOptions {
                timeout: Some(Duration::from_millis(200)),
                metadata: Vec::new(),
            },
        )
        .await
        .unwrap_err();
    let mine = mine.call_error().unwrap();
    assert_eq!(mine.code, ErrorCode::Timeout);
    assert!(mine.message.contains("its caller's deadline"), "{mine}");
    assert!(!mine.message.contains("stack.toml"), "{mine}");
    let limit = call(&client, "sleep", r#"{"ms":3000}"#).await.unwrap_err();
    assert_eq!(limit.code, ErrorCode::Timeout);
    assert!(limit.message.contains("stack.toml"), "{limit}");
}
