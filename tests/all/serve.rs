//! Nodes served in process through `hearth_host::serve`, the entry point
//! `host serve` uses: shutdown drains calls in flight and refuses new ones.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_host::client::{CallOptions, Client, ClientError};
use hearth_host::config::NodeConfig;
use hearth_host::ops::Node;
use hearth_host::serve::{Listeners, Server};
use hearth_registry::{CallError, ErrorCode, ResponseEnvelope};
use hearth_tests::misbehave_plugin_dir;
use tokio::task::JoinHandle;

fn config(dir: &std::path::Path) -> NodeConfig {
    misbehave_plugin_dir(dir);
    let stack = r#"
        [node]
        name = "inproc"
        data_dir = "data"
        socket = "run/host.sock"
        [plugins.echo]
        [plugins.misbehave]
        path = "misbehave"
        timeout_ms = 30000
        "#;
    let path = dir.join("stack.toml");
    std::fs::write(&path, stack).unwrap();
    NodeConfig::load(Some(&path)).unwrap()
}

/// A node served in process with one slow call in flight.
struct Draining {
    node: Arc<Node>,
    socket: PathBuf,
    client: Arc<Client>,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: JoinHandle<()>,
    slow: JoinHandle<Result<ResponseEnvelope, ClientError>>,
}

/// Serves a node (with `drain` as its drain deadline) and starts a call
/// sleeping `ms`; returns once the node is running it.
async fn serve_with_a_slow_call(dir: &std::path::Path, drain: Duration, ms: u64) -> Draining {
    let config = config(dir);
    let server = Server::start(&config, Listeners::from_config(&config))
        .await
        .unwrap()
        .drain(drain);
    let node = server.node().clone();
    let socket = server.socket_path().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = Arc::new(Client::connect(&socket).await.unwrap());
    let pong = client
        .call("/node/echo/ping", &serde_json::json!({"msg": "up"}))
        .await
        .unwrap();
    assert_eq!(pong.output["msg"], "up");
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            let input = format!(r#"{{"ms":{ms}}}"#);
            client
                .call_raw("/node/misbehave/sleep", &input, CallOptions::default())
                .await
        })
    };
    // The drain must have something to wait for: wait until the node runs it.
    let started = Instant::now();
    while node.calls_in_flight() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the call never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Draining {
        node,
        socket,
        client,
        stop,
        serving,
        slow,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_calls_in_flight_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve_with_a_slow_call(dir.path(), Duration::from_secs(30), 2000).await;
    node.stop.send(()).unwrap();

    // New calls on the open connection are refused while it drains.
    let started = Instant::now();
    let refusal: CallError = loop {
        match node
            .client
            .call("/node/echo/ping", &serde_json::json!({"msg": "late"}))
            .await
        {
            Err(ClientError::Call(error)) => break error,
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the node never started draining"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(other) => panic!("{other}"),
        }
    };
    assert_eq!(refusal.code, ErrorCode::Unavailable, "{refusal:?}");
    assert!(refusal.message.contains("shutting down"), "{refusal:?}");
    // No new connections: the socket is gone.
    assert!(!node.socket.exists());
    assert!(Client::connect(&node.socket).await.is_err());

    // The call in flight finished, and then the node stopped.
    let done = node
        .slow
        .await
        .unwrap()
        .expect("the call in flight completes");
    assert_eq!(done.output["ok"], true);
    tokio::time::timeout(Duration::from_secs(30), node.serving)
        .await
        .expect("serve returns once drained")
        .unwrap();
    assert_eq!(node.node.calls_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_deadline_stops_a_node_with_calls_still_running() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve_with_a_slow_call(dir.path(), Duration::from_millis(200), 20_000).await;
    node.stop.send(()).unwrap();
    // serve returns at the drain deadline, not after the 20 s call.
    tokio::time::timeout(Duration::from_secs(15), node.serving)
        .await
        .expect("serve gives up at the drain deadline")
        .unwrap();
    assert_eq!(
        node.node.calls_in_flight(),
        1,
        "the slow call was still running"
    );
    node.slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_does_not_wait_for_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let server = Server::start(&config, Listeners::from_config(&config))
        .await
        .unwrap()
        .drain(Duration::from_secs(60));
    let node = server.node().clone();
    let socket = server.socket_path().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = Arc::new(Client::connect(&socket).await.unwrap());
    // A follower of node events: it streams until its caller goes.
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let follower = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call_with_events("/node/host/events", "{}", CallOptions::default(), |e| {
                    let _ = seen_tx.send(e);
                })
                .await
        })
    };
    seen.recv().await.expect("the kept events replay first");
    assert_eq!(
        node.calls_in_flight(),
        0,
        "a subscription is not work to drain"
    );
    stop.send(()).unwrap();
    // Serve returns at once, not at the 60 s drain deadline.
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("serve returns without waiting for the subscription")
        .unwrap();
    follower.abort();
}
