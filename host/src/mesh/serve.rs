//! Serving the calls a peer makes on a connection: one stream per call,
//! the Unix socket's frames on it, the peer's identity and `allow` list
//! handed to [`crate::node::Node::call`] with the call.
//!
//! A call whose caller resets its stream, sends `Cancel`, or loses the
//! connection is cancelled here (when `cancel` was negotiated): its task
//! is dropped, and with it the plugin instance running it.
//!
//! What a peer can make this node hold is bounded: call frames are read
//! only against a per-connection byte budget, a peer that stops reading its
//! replies has its call dropped after [`WRITE_STALL`], and the number of
//! streams is capped by the transport.

use std::sync::Arc;
use std::time::Duration;

use hearth_registry::{CallError, ErrorCode};
use tokio::sync::{Semaphore, mpsc};

use super::Mesh;
use super::features::{CALLS, CANCEL, DEADLINES, EVENTS};
use super::link::{PeerLink, Session};
use super::wire::{self, meta};
use crate::node::{CallRequest, PeerCaller};
use crate::runtime::Identity;
use crate::transport::frame::{self, ClientFrame, FrameError, NodeFrame, WireResult};

/// Events of one call buffered before the plugin waits.
const EVENT_QUEUE: usize = 64;
/// Bytes of call frames one connection may have in memory at once (at
/// least two of the largest frame); more calls wait for room.
const CONNECTION_BUDGET: usize = 64 << 20;
/// Budget unit: permits count KiB.
const BUDGET_UNIT: usize = 1024;
/// How long a write may wait on a peer that does not read before the call
/// is dropped.
const WRITE_STALL: Duration = Duration::from_secs(10);
/// Largest frame a caller may send after its `Call` (a `Cancel`).
const MAX_FOLLOW_UP_BYTES: u32 = 1024;

/// Serves the peer's call streams until the connection ends; returns why.
pub(super) async fn serve_connection(
    mesh: &Arc<Mesh>,
    link: &Arc<PeerLink>,
    session: &Session,
) -> quinn::ConnectionError {
    let max_frame = mesh.node().map_or(0, |n| n.limits().max_frame_bytes) as usize;
    let budget = Arc::new(Semaphore::new(
        CONNECTION_BUDGET.max(2 * max_frame) / BUDGET_UNIT,
    ));
    loop {
        match session.connection.accept_bi().await {
            Ok((send, recv)) => {
                let mesh = mesh.clone();
                let link = link.clone();
                let session = session.clone();
                let budget = budget.clone();
                tokio::spawn(async move {
                    serve_call(&mesh, &link, &session, &budget, send, recv).await;
                });
            }
            Err(err) => return err,
        }
    }
}

/// What the caller did while its call ran.
enum CallerSignal {
    /// Sent `Cancel`.
    Cancelled,
    /// Reset the stream or lost the connection.
    Gone(String),
}

/// Watches the caller's side of a call stream. Finishing it (FIN) is not
/// a cancellation: the caller still waits for the reply.
async fn watch_caller(mut recv: quinn::RecvStream) -> CallerSignal {
    loop {
        match frame::read_frame(&mut recv, MAX_FOLLOW_UP_BYTES).await {
            Ok(Some(body)) => {
                if let Ok(ClientFrame::Cancel { .. }) = frame::decode::<ClientFrame>(&body) {
                    return CallerSignal::Cancelled;
                }
            }
            Ok(None) => std::future::pending::<()>().await,
            Err(err) => return CallerSignal::Gone(err.to_string()),
        }
    }
}

/// Writes `frame`; false when the peer is gone or has not read for
/// [`WRITE_STALL`].
async fn send(send: &mut quinn::SendStream, frame: &NodeFrame) -> bool {
    matches!(
        tokio::time::timeout(WRITE_STALL, frame::write_frame(send, frame)).await,
        Ok(Ok(()))
    )
}

fn refused(id: Option<u64>, code: ErrorCode, message: String) -> NodeFrame {
    NodeFrame::Refused {
        id,
        error: CallError::new(code, message),
    }
}

async fn serve_call(
    mesh: &Mesh,
    link: &PeerLink,
    session: &Session,
    budget: &Semaphore,
    mut tx: quinn::SendStream,
    mut rx: quinn::RecvStream,
) {
    let Some(node) = mesh.node() else {
        let _ = send(
            &mut tx,
            &refused(
                None,
                ErrorCode::Unavailable,
                "the node is shutting down".into(),
            ),
        )
        .await;
        return;
    };
    let max_frame = node.limits().max_frame_bytes;
    let peer = link.name();
    if !session.has(CALLS) {
        let _ = send(
            &mut tx,
            &refused(
                None,
                ErrorCode::Unavailable,
                format!("`{}` and `{peer}` did not negotiate `calls`", mesh.name),
            ),
        )
        .await;
        let _ = tx.finish();
        return;
    }
    let len = match frame::read_frame_len(&mut rx, max_frame).await {
        Ok(Some(len)) => Ok(len),
        Ok(None) => return,
        Err(err) => Err(err),
    };
    let units = len
        .as_ref()
        .map_or(0, |len| (*len as usize).div_ceil(BUDGET_UNIT));
    // Held until the call is done: its input lives that long.
    let Ok(_reserved) = budget
        .acquire_many(u32::try_from(units).unwrap_or(u32::MAX))
        .await
    else {
        return;
    };
    let body = match len {
        Ok(len) => frame::read_frame_body(&mut rx, len).await,
        Err(err) => Err(err),
    };
    let body = match body {
        Ok(body) => body,
        Err(err @ FrameError::Oversize { .. }) => {
            tracing::warn!(peer, error = %err, "refused an oversize call frame from a peer");
            let _ = send(&mut tx, &refused(None, ErrorCode::ResourceExhausted, format!("{err}; the stream is closed (the receiving node's `limits.max_frame_bytes`)"))).await;
            let _ = tx.finish();
            let _ = rx.stop(wire::RESET_BAD_FRAME.into());
            return;
        }
        Err(err) => {
            let _ = send(
                &mut tx,
                &refused(
                    None,
                    ErrorCode::InvalidInput,
                    format!("malformed frame: {err}"),
                ),
            )
            .await;
            let _ = tx.finish();
            return;
        }
    };
    let call = match frame::decode::<ClientFrame>(&body) {
        Ok(ClientFrame::Call(call)) => call,
        Ok(other) => {
            let kind = match other {
                ClientFrame::Hello { .. } => "Hello",
                _ => "Cancel",
            };
            let _ = send(
                &mut tx,
                &refused(
                    None,
                    ErrorCode::InvalidInput,
                    format!("a call stream must start with Call, not {kind}"),
                ),
            )
            .await;
            let _ = tx.finish();
            return;
        }
        Err(err) => {
            tracing::warn!(peer, error = %err, "malformed call frame from a peer");
            let _ = send(
                &mut tx,
                &refused(
                    None,
                    ErrorCode::InvalidInput,
                    format!("malformed frame ({} bytes): {err}", body.len()),
                ),
            )
            .await;
            let _ = tx.finish();
            return;
        }
    };
    let id = call.id;
    let mut metadata = Vec::with_capacity(call.metadata.len());
    let mut parent_request_id = None;
    let mut depth = 0;
    for (key, value) in call.metadata {
        match key.as_str() {
            meta::PARENT_REQUEST_ID => parent_request_id = Some(value),
            meta::DEPTH => depth = value.parse().unwrap_or(0),
            // The reserved prefix is the host's; a peer cannot set it.
            reserved if reserved.starts_with(meta::RESERVED_PREFIX) => {}
            _ => metadata.push((key, value)),
        }
    }
    let path = call.path;
    let (events_tx, mut events_rx) = mpsc::channel::<String>(EVENT_QUEUE);
    let request = CallRequest {
        path: path.clone(),
        input: call.input,
        identity: Identity {
            id: format!("peer:{peer}"),
            scopes: link.config.scopes.clone(),
        },
        metadata,
        timeout: call
            .timeout_ms
            .filter(|_| session.has(DEADLINES))
            .map(Duration::from_millis),
        events: session.has(EVENTS).then_some(events_tx),
        peer: Some(PeerCaller {
            name: peer.to_owned(),
            allow: link.config.allow.clone().into(),
            parent_request_id,
            depth,
        }),
    };
    // Without `cancel` the call runs to its end whatever the caller does.
    let cancellable = session.has(CANCEL);
    let caller = async move {
        if cancellable {
            watch_caller(rx).await
        } else {
            std::future::pending().await
        }
    };
    tokio::pin!(caller);
    let running = node.call(request);
    tokio::pin!(running);
    let outcome = loop {
        tokio::select! {
            biased;
            Some(payload) = events_rx.recv() => {
                if !send(&mut tx, &NodeFrame::Event { id, payload }).await {
                    tracing::debug!(peer, %path, "peer stopped reading events; cancelling");
                    return;
                }
            }
            signal = &mut caller => match signal {
                CallerSignal::Cancelled => {
                    tracing::debug!(peer, %path, "peer cancelled its call");
                    let error = CallError::new(ErrorCode::Failed, "cancelled by the caller");
                    let _ = send(&mut tx, &NodeFrame::Reply { id, result: WireResult::Err(error) }).await;
                    let _ = tx.finish();
                    return;
                }
                CallerSignal::Gone(why) => {
                    tracing::info!(peer, %path, reason = %why, "peer abandoned its call; cancelled it");
                    return;
                }
            },
            outcome = &mut running => break outcome,
        }
    };
    while let Ok(payload) = events_rx.try_recv() {
        if !send(&mut tx, &NodeFrame::Event { id, payload }).await {
            return;
        }
    }
    let result = match outcome {
        Ok(response) => WireResult::Ok(response.into()),
        Err(error) => WireResult::Err(error),
    };
    if send(&mut tx, &NodeFrame::Reply { id, result }).await {
        let _ = tx.finish();
    }
}
