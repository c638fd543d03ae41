//! Nodes served in process through `hearth_host::serve`, the entry point
//! `host serve` uses: shutdown drains calls in flight and refuses new ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_host::client::{CallOptions, Client, ClientError};
use hearth_host::config::NodeConfig;
use hearth_host::serve::{Listeners, Server};
use hearth_registry::ErrorCode;
use hearth_tests::misbehave_plugin_dir;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_calls_in_flight_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let server = Server::start(&config, Listeners::from_config(&config))
        .await
        .unwrap();
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

    // A call that is still running when the shutdown comes.
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call_raw(
                    "/node/misbehave/sleep",
                    r#"{"ms":4000}"#,
                    CallOptions::default(),
                )
                .await
        })
    };
    // Wait until the node has it: the drain then has something to wait for.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();

    // New calls on the open connection are refused while it drains.
    let started = Instant::now();
    let refusal = loop {
        match client
            .call("/node/echo/ping", &serde_json::json!({"msg": "late"}))
            .await
        {
            Err(ClientError::Call(error)) => break error,
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the node never started draining"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("{other}"),
        }
    };
    assert_eq!(refusal.code, ErrorCode::Unavailable, "{refusal:?}");
    assert!(refusal.message.contains("shutting down"), "{refusal:?}");
    // No new connections: the socket is gone.
    assert!(!socket.exists());
    assert!(Client::connect(&socket).await.is_err());

    // The call in flight finished, and then the node stopped.
    let done = slow.await.unwrap().expect("the call in flight completes");
    assert_eq!(done.output["ok"], true);
    tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("serve returns once drained")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_deadline_stops_a_node_with_calls_still_running() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let server = Server::start(&config, Listeners::from_config(&config))
        .await
        .unwrap()
        .drain(Duration::from_millis(200));
    let socket = server.socket_path().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = Arc::new(Client::connect(&socket).await.unwrap());
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call_raw(
                    "/node/misbehave/sleep",
                    r#"{"ms":20000}"#,
                    CallOptions::default(),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    // serve returns after the drain deadline, not after the 20 s call.
    tokio::time::timeout(Duration::from_secs(15), serving)
        .await
        .expect("serve gives up at the drain deadline")
        .unwrap();
    slow.abort();
}
