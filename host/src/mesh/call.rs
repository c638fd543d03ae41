//! Calling an operation on a peer: one QUIC stream per call, carrying the
//! Unix socket's frames.
//!
//! The caller's deadline bounds the whole exchange and travels with the
//! call (feature `deadlines`); events of a subscription come back as
//! `Event` frames (feature `events`). A call abandoned here — its
//! deadline passed, its caller went away — resets the stream, which
//! cancels it on the peer.

use std::time::{Duration, Instant};

use hearth_registry::{CallError, ErrorCode, OperationPath, ResponseEnvelope, Source};
use tokio::sync::mpsc;

use super::Mesh;
use super::features::{CALLS, CANCEL, DEADLINES, EVENTS};
use super::link::Session;
use super::wire::{self, meta};
use crate::transport::frame::{self, CallFrame, ClientFrame, NodeFrame, WireResult};

/// Largest frame accepted back from a peer.
const MAX_REPLY_BYTES: u32 = 64 << 20;
/// How long past a deadline it sent the caller waits for the peer's own
/// `timeout` reply, which says what timed out there, before giving up.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

/// A call to make on a peer.
#[derive(Debug)]
pub struct RemoteCall {
    /// The operation as the peer serves it (`/node/echo/ping`).
    pub path: OperationPath,
    /// Input JSON text.
    pub input: String,
    /// Metadata for the handler.
    pub metadata: Vec<(String, String)>,
    /// When this node stops waiting.
    pub deadline: Instant,
    /// Whether the deadline travels to the peer; when not, the peer applies
    /// its own limit for the operation.
    pub send_deadline: bool,
    /// The calling request, when a plugin made this call through `env`.
    pub parent_request_id: Option<String>,
    /// Nesting depth so far on this node.
    pub depth: u32,
    /// Where a subscription's events go.
    pub events: Option<mpsc::Sender<String>>,
}

/// Resets the call stream unless the call completed: dropping an
/// unfinished call (deadline, caller gone) cancels it on the peer when
/// `cancel` was negotiated.
struct CallStream {
    send: quinn::SendStream,
    done: bool,
    cancel: bool,
}

impl Drop for CallStream {
    fn drop(&mut self) {
        if !self.done && self.cancel {
            let _ = self.send.reset(wire::RESET_CANCELLED.into());
        }
    }
}

impl Mesh {
    /// Calls `call.path` on `peer`.
    pub async fn call(&self, peer: &str, call: RemoteCall) -> Result<ResponseEnvelope, CallError> {
        let link = self.link(peer)?;
        let session = link.session_for_call(call.deadline).await?;
        let started = Instant::now();
        let budget = call.deadline.saturating_duration_since(started);
        let path = call.path.clone();
        let give_up = if call.send_deadline && session.has(DEADLINES) {
            call.deadline + DEADLINE_GRACE
        } else {
            call.deadline
        };
        match tokio::time::timeout_at(give_up.into(), exchange(peer, &session, call)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::new(
                ErrorCode::Timeout,
                format!(
                    "no reply from `{peer}` to {path} within {} ms; the call was cancelled there",
                    budget.as_millis()
                ),
            )),
        }
    }
}

fn lost(peer: &str, path: &OperationPath, why: impl std::fmt::Display) -> CallError {
    CallError::new(
        ErrorCode::Unavailable,
        format!(
            "connection to `{peer}` lost during {path} ({why}); it may or may not have run there"
        ),
    )
}

async fn exchange(
    peer: &str,
    session: &Session,
    call: RemoteCall,
) -> Result<ResponseEnvelope, CallError> {
    let path = call.path;
    if !session.has(CALLS) {
        return Err(CallError::new(
            ErrorCode::Unavailable,
            format!("`{peer}` and this node did not negotiate `calls`"),
        ));
    }
    let (send, mut recv) = session
        .connection
        .open_bi()
        .await
        .map_err(|e| lost(peer, &path, super::link::describe_close(&e)))?;
    let mut stream = CallStream {
        send,
        done: false,
        cancel: session.has(CANCEL),
    };
    let mut metadata: Vec<(String, String)> = call
        .metadata
        .into_iter()
        .filter(|(k, _)| !k.starts_with(meta::RESERVED_PREFIX))
        .collect();
    if let Some(parent) = call.parent_request_id {
        metadata.push((meta::PARENT_REQUEST_ID.to_owned(), parent));
    }
    metadata.push((meta::DEPTH.to_owned(), call.depth.to_string()));
    let left = call.deadline.saturating_duration_since(Instant::now());
    let frame = ClientFrame::Call(CallFrame {
        id: 1,
        path: path.to_string(),
        input: call.input,
        metadata,
        timeout_ms: (call.send_deadline && session.has(DEADLINES))
            .then(|| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
    });
    frame::write_frame(&mut stream.send, &frame)
        .await
        .map_err(|e| lost(peer, &path, e))?;
    let events = call.events.filter(|_| session.has(EVENTS));
    loop {
        let body = match frame::read_frame(&mut recv, MAX_REPLY_BYTES).await {
            Ok(Some(body)) => body,
            Ok(None) => return Err(lost(peer, &path, "the stream ended without a reply")),
            Err(err) => {
                let why = session
                    .connection
                    .close_reason()
                    .map_or_else(|| err.to_string(), |e| super::link::describe_close(&e));
                return Err(lost(peer, &path, why));
            }
        };
        let frame = frame::decode::<NodeFrame>(&body).map_err(|e| {
            CallError::new(
                ErrorCode::Failed,
                format!("`{peer}` sent an undecodable frame for {path}: {e}"),
            )
        })?;
        match frame {
            NodeFrame::Event { payload, .. } => {
                if let Some(events) = &events
                    && events.send(payload).await.is_err()
                {
                    // Nobody listens any more: abandon (the drop resets).
                    return Err(CallError::new(
                        ErrorCode::Failed,
                        "cancelled: the caller went away",
                    ));
                }
            }
            NodeFrame::Reply { result, .. } => {
                stream.done = true;
                let _ = stream.send.finish();
                return match result {
                    WireResult::Ok(response) => Ok(ResponseEnvelope {
                        output: serde_json::from_str(&response.output).map_err(|e| {
                            CallError::new(
                                ErrorCode::Failed,
                                format!("`{peer}` returned output that is not JSON: {e}"),
                            )
                        })?,
                        source: Source::Remote(peer.to_owned()),
                        request_id: response.request_id,
                        parent_request_id: response.parent_request_id,
                    }),
                    WireResult::Err(error) => Err(remote_error(peer, error)),
                };
            }
            NodeFrame::Refused { error, .. } => {
                stream.done = true;
                return Err(remote_error(peer, error));
            }
            NodeFrame::Hello { .. } => {}
        }
    }
}

/// The peer's typed error, its message saying where it happened.
fn remote_error(peer: &str, error: CallError) -> CallError {
    CallError::new(error.code, format!("on `{peer}`: {}", error.message))
}
