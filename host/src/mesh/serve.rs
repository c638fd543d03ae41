//! Serving the calls a peer makes on a connection: one stream per call,
//! decoded into a [`CallRequest`] whose origin carries the peer's name,
//! `allow` list, parent request and depth, and run through the
//! OperationEnv's one pipeline ([`crate::ops::serve`]).
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

use hearth_protocol::features::{CALLS, CANCEL, DEADLINES, EVENTS};
use hearth_protocol::frame::{self, FrameError};
use hearth_protocol::mesh::{
    self as wire, CALLER_SCOPES_METADATA, CallerFrame, RESERVED_METADATA_PREFIX, ServerFrame,
};
use hearth_registry::{CallError, ErrorCode};
use tokio::sync::Semaphore;

use super::Mesh;
use super::link::{PeerLink, Session};
use crate::call::{CallRequest, EventSink, Origin, PeerOrigin};
use crate::ops::Served;
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
                // Boxed: tokio moves a task's future by copying it, and
                // this one holds the whole pipeline's (kilobytes).
                tokio::spawn(Box::pin(async move {
                    serve_call(&mesh, &link, &session, &budget, send, recv).await;
                }));
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
                if let Ok(CallerFrame::Cancel) = frame::decode::<CallerFrame>(&body) {
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
async fn send(send: &mut quinn::SendStream, frame: &ServerFrame) -> bool {
    matches!(
        tokio::time::timeout(WRITE_STALL, frame::write_frame(send, frame)).await,
        Ok(Ok(()))
    )
}

fn refused(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Refused(CallError::new(code, message))
}

/// Sends a call's events as `Event` frames on its stream.
struct StreamEvents<'a> {
    tx: &'a mut quinn::SendStream,
}

impl EventSink for StreamEvents<'_> {
    async fn emit(&mut self, payload: String) -> bool {
        send(self.tx, &ServerFrame::Event { payload }).await
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
            &refused(ErrorCode::Unavailable, "the node is shutting down"),
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
            let _ = send(&mut tx, &refused(ErrorCode::ResourceExhausted, format!("{err}; the stream is closed (the receiving node's `limits.max_frame_bytes`)"))).await;
            let _ = tx.finish();
            let _ = rx.stop(wire::RESET_BAD_FRAME.into());
            return;
        }
        Err(err) => {
            let _ = send(
                &mut tx,
                &refused(ErrorCode::InvalidInput, format!("malformed frame: {err}")),
            )
            .await;
            let _ = tx.finish();
            return;
        }
    };
    let call = match frame::decode::<CallerFrame>(&body) {
        Ok(CallerFrame::Call(call)) => call,
        Ok(CallerFrame::Cancel) => {
            let _ = send(
                &mut tx,
                &refused(
                    ErrorCode::InvalidInput,
                    "a call stream must start with Call, not Cancel",
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
                    ErrorCode::InvalidInput,
                    format!("malformed frame ({} bytes): {err}", body.len()),
                ),
            )
            .await;
            let _ = tx.finish();
            return;
        }
    };
    let path = call.path;
    let mut identity = crate::access::peer(peer, &link.config.scopes);
    identity.on_behalf_of = call
        .metadata
        .iter()
        .find(|(key, _)| key == CALLER_SCOPES_METADATA)
        // Unreadable scopes hold nothing.
        .map(|(_, scopes)| serde_json::from_str(scopes).unwrap_or_default());
    let request = CallRequest {
        origin: Origin::Peer(PeerOrigin {
            name: peer.to_owned(),
            allow: link.config.allow.clone().into(),
            parent_request_id: call.parent_request_id,
            depth: call.depth,
        }),
        path: path.clone(),
        input: call.input,
        identity,
        // The reserved prefix is the host's; a peer cannot set it.
        metadata: call
            .metadata
            .into_iter()
            .filter(|(key, _)| !key.starts_with(RESERVED_METADATA_PREFIX))
            .collect(),
        timeout: call
            .timeout_ms
            .filter(|_| session.has(DEADLINES))
            .map(Duration::from_millis),
        events: None,
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
    let streams_events = session.has(EVENTS);
    let served = {
        let mut events = StreamEvents { tx: &mut tx };
        let running = async {
            if streams_events {
                crate::ops::serve(|r| node.call_boxed(r), request, &mut events).await
            } else {
                Served::Done(node.call_boxed(request).await)
            }
        };
        tokio::select! {
            biased;
            signal = caller => Err(signal),
            served = running => Ok(served),
        }
    };
    let outcome = match served {
        Ok(Served::Done(outcome)) => outcome,
        Ok(Served::Abandoned) => {
            tracing::debug!(peer, %path, "peer stopped reading events; cancelling");
            return;
        }
        Err(CallerSignal::Cancelled) => {
            tracing::debug!(peer, %path, "peer cancelled its call");
            let error = CallError::new(ErrorCode::Failed, "cancelled by the caller");
            let _ = send(
                &mut tx,
                &ServerFrame::Reply(Err::<hearth_registry::ResponseEnvelope, _>(error).into()),
            )
            .await;
            let _ = tx.finish();
            return;
        }
        Err(CallerSignal::Gone(why)) => {
            tracing::info!(peer, %path, reason = %why, "peer abandoned its call; cancelled it");
            return;
        }
    };
    if send(&mut tx, &ServerFrame::Reply(outcome.into())).await {
        let _ = tx.finish();
    }
}
