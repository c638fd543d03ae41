//! The socket protocol through the client library and raw frames:
//! multiplexing, malformed and oversize frames, the Hello handshake.

use std::time::Duration;

use hearth_host::client::{CallOptions, Client, ClientError};
use hearth_protocol::frame;
use hearth_protocol::socket::{CallFrame, ClientFrame, NodeFrame, WireResult};
use hearth_registry::ErrorCode;
use hearth_tests::TestNode;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

async fn raw(node: &TestNode) -> UnixStream {
    UnixStream::connect(node.socket()).await.unwrap()
}

async fn read(stream: &mut UnixStream) -> Option<NodeFrame> {
    let body = tokio::time::timeout(Duration::from_secs(10), frame::read_frame(stream, 1 << 24))
        .await
        .expect("node answers")
        .unwrap()?;
    Some(frame::decode(&body).unwrap())
}

async fn hello(stream: &mut UnixStream) {
    let hello = ClientFrame::Hello {
        protocol: 1,
        client: "test".into(),
    };
    frame::write_frame(stream, &hello).await.unwrap();
    assert!(matches!(read(stream).await, Some(NodeFrame::Hello { .. })));
}

fn ping(id: u64, msg: &str) -> ClientFrame {
    ClientFrame::Call(CallFrame {
        id,
        path: "/node/echo/ping".into(),
        input: serde_json::json!({ "msg": msg }).to_string(),
        metadata: vec![],
        timeout_ms: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_connection() {
    let node = TestNode::start();
    let client = std::sync::Arc::new(node.client().await);
    assert!(client.identity().starts_with("local:uid:"));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/node/echo/ping"
            } else {
                "/node/relay/ping"
            };
            let reply = client
                .call(path, &serde_json::json!({ "msg": format!("m{i}") }))
                .await
                .unwrap();
            (i, reply)
        }));
    }
    for task in tasks {
        let (i, reply) = task.await.unwrap();
        let got = if i % 2 == 0 {
            &reply.output["msg"]
        } else {
            &reply.output["reply"]
        };
        assert_eq!(got, &serde_json::json!(format!("m{i}")));
    }
}

#[tokio::test]
async fn replies_come_back_as_calls_finish_not_in_order() {
    let node = TestNode::start();
    let mut stream = raw(&node).await;
    hello(&mut stream).await;
    for id in [10, 11, 12] {
        frame::write_frame(&mut stream, &ping(id, &format!("n{id}")))
            .await
            .unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        match read(&mut stream).await {
            Some(NodeFrame::Reply {
                id,
                result: WireResult::Ok(r),
            }) => {
                assert!(r.output.contains(&format!("n{id}")));
                ids.push(id);
            }
            other => panic!("{other:?}"),
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, [10, 11, 12]);
}

#[tokio::test]
async fn malformed_frames_are_refused_and_the_connection_goes_on() {
    let node = TestNode::start();
    let mut stream = raw(&node).await;
    hello(&mut stream).await;
    // A length prefix followed by bytes that are no frame at all.
    stream
        .write_all(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd])
        .await
        .unwrap();
    match read(&mut stream).await {
        Some(NodeFrame::Refused { id: None, error }) => {
            assert_eq!(error.code, ErrorCode::InvalidInput);
            assert!(
                error.message.contains("malformed frame"),
                "{}",
                error.message
            );
        }
        other => panic!("{other:?}"),
    }
    // A zero-length frame.
    stream.write_all(&[0, 0, 0, 0]).await.unwrap();
    assert!(matches!(
        read(&mut stream).await,
        Some(NodeFrame::Refused { id: None, .. })
    ));
    // Still serving on the same connection.
    frame::write_frame(&mut stream, &ping(1, "after"))
        .await
        .unwrap();
    assert!(matches!(
        read(&mut stream).await,
        Some(NodeFrame::Reply {
            id: 1,
            result: WireResult::Ok(_)
        })
    ));
}

#[tokio::test]
async fn oversize_frames_close_that_connection_only() {
    let node = TestNode::start_with_stack("[limits]\nmax_frame_bytes = 4096\n[plugins.echo]\n");
    let mut stream = raw(&node).await;
    hello(&mut stream).await;
    let big = "x".repeat(10_000);
    frame::write_frame(&mut stream, &ping(1, &big))
        .await
        .unwrap();
    match read(&mut stream).await {
        Some(NodeFrame::Refused { id: None, error }) => {
            assert_eq!(error.code, ErrorCode::ResourceExhausted);
            assert!(
                error.message.contains("exceeds the 4096-byte limit"),
                "{}",
                error.message
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(read(&mut stream).await.is_none(), "connection closed");
    // A length prefix of 4 GiB is refused without allocating it.
    let mut stream = raw(&node).await;
    hello(&mut stream).await;
    stream.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert!(matches!(
        read(&mut stream).await,
        Some(NodeFrame::Refused { .. })
    ));
    // Other clients are unaffected.
    let client = node.client().await;
    let reply = client
        .call("/node/echo/ping", &serde_json::json!({"msg": "fine"}))
        .await
        .unwrap();
    assert_eq!(reply.output["msg"], "fine");
}

#[tokio::test]
async fn the_first_frame_must_be_a_compatible_hello() {
    let node = TestNode::start();
    let mut stream = raw(&node).await;
    frame::write_frame(&mut stream, &ping(1, "too early"))
        .await
        .unwrap();
    match read(&mut stream).await {
        Some(NodeFrame::Refused { error, .. }) => {
            assert!(error.message.contains("first frame must be Hello"))
        }
        other => panic!("{other:?}"),
    }
    assert!(read(&mut stream).await.is_none());

    let mut stream = raw(&node).await;
    let hello = ClientFrame::Hello {
        protocol: 99,
        client: "future".into(),
    };
    frame::write_frame(&mut stream, &hello).await.unwrap();
    match read(&mut stream).await {
        Some(NodeFrame::Refused { error, .. }) => {
            assert!(
                error
                    .message
                    .contains("protocol version 99 is not supported"),
                "{}",
                error.message
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn duplicate_ids_in_flight_are_refused() {
    let node = TestNode::start();
    let mut stream = raw(&node).await;
    hello(&mut stream).await;
    let slow = ClientFrame::Call(CallFrame {
        id: 5,
        path: "/node/relay/cycle".into(),
        input: "{}".into(),
        metadata: vec![],
        timeout_ms: None,
    });
    // Both frames in one write, so the node reads the duplicate while the
    // first call (nine nested instances) is certainly still running.
    let mut both = Vec::new();
    frame::write_frame(&mut both, &slow).await.unwrap();
    frame::write_frame(&mut both, &ping(5, "dup"))
        .await
        .unwrap();
    stream.write_all(&both).await.unwrap();
    let mut saw_conflict = false;
    let mut replies = 0;
    for _ in 0..2 {
        match read(&mut stream).await {
            Some(NodeFrame::Refused { id: Some(5), error }) => {
                assert_eq!(error.code, ErrorCode::Conflict, "{}", error.message);
                saw_conflict = true;
            }
            Some(NodeFrame::Reply {
                id: 5,
                result: WireResult::Err(e),
            }) => {
                // The first call ran: the cycle ends at the depth bound.
                assert_eq!(e.code, ErrorCode::ResourceExhausted, "{}", e.message);
                replies += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(saw_conflict);
    assert_eq!(replies, 1);
}

#[tokio::test]
async fn typed_errors_and_metadata_reach_the_client() {
    let node = TestNode::start();
    let client = node.client().await;
    let err = client
        .call("/node/echo/pong", &serde_json::json!({}))
        .await
        .unwrap_err();
    let ClientError::Call(err) = err else {
        panic!("{err:?}")
    };
    assert_eq!(err.code, ErrorCode::NotFound);
    let options = CallOptions {
        timeout: Some(Duration::from_millis(1500)),
        metadata: vec![("trace".into(), "abc".into())],
    };
    let ctx = client
        .call_raw("/node/echo/context", "{}", options)
        .await
        .unwrap();
    assert!(ctx.output["deadline_ms"].as_u64().unwrap() <= 1500);
    assert_eq!(ctx.output["depth"], 0);
    assert_eq!(ctx.output["nested"], false);
    let _ = Client::connect(node.socket()).await.unwrap();
}
