//! Calling an operation on a peer: one QUIC stream per call, carrying the
//! mesh's call frames.
//!
//! The caller's deadline bounds the whole exchange and travels with the
//! call (feature `deadlines`); events of a subscription come back as
//! `Event` frames (feature `events`). A call abandoned here — its
//! deadline passed, its caller went away — resets the stream, which
//! cancels it on the peer.

use std::time::{Duration, Instant};

use hearth_protocol::features::{CALLS, CANCEL, DEADLINES, EVENTS};
use hearth_protocol::frame;
use hearth_protocol::mesh::{
    self as wire, CALLER_SCOPES_METADATA, CallerFrame, MeshCall, RESERVED_METADATA_PREFIX,
    ServerFrame,
};
use hearth_protocol::socket::WireResult;
use hearth_registry::{CallError, ErrorCode, OperationPath, ResponseEnvelope, Source};

use super::Mesh;
use super::link::Session;
use crate::ops::PeerCall;

/// Largest frame accepted back from a peer.
const MAX_REPLY_BYTES: u32 = 64 << 20;
/// How long past a deadline it sent the caller waits for the peer's own
/// `timeout` reply, which says what timed out there, before giving up.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

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
    pub(super) async fn call_peer(
        &self,
        peer: &str,
        call: PeerCall,
    ) -> Result<ResponseEnvelope, CallError> {
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
    call: PeerCall,
) -> Result<ResponseEnvelope, CallError> {
    let path = call.path;
    let parent_request_id = call.request.parent_request_id().map(str::to_owned);
    let request = call.request;
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
    let left = call.deadline.saturating_duration_since(Instant::now());
    let mut metadata: Vec<(String, String)> = request
        .metadata
        .into_iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_METADATA_PREFIX))
        .collect();
    // A client reaches no further through this node than it could itself.
    if !request.identity.scopes.iter().any(|s| s == "*") {
        metadata.push((
            CALLER_SCOPES_METADATA.to_owned(),
            serde_json::to_string(&request.identity.scopes).unwrap_or_default(),
        ));
    }
    let frame = CallerFrame::Call(MeshCall {
        path: path.to_string(),
        input: request.input,
        metadata,
        parent_request_id,
        depth: call.depth,
        timeout_ms: (call.send_deadline && session.has(DEADLINES))
            .then(|| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
    });
    frame::write_frame(&mut stream.send, &frame)
        .await
        .map_err(|e| lost(peer, &path, e))?;
    let events = request.events.filter(|_| session.has(EVENTS));
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
        let frame = frame::decode::<ServerFrame>(&body).map_err(|e| {
            CallError::new(
                ErrorCode::Failed,
                format!("`{peer}` sent an undecodable frame for {path}: {e}"),
            )
        })?;
        match frame {
            ServerFrame::Event { payload } => {
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
            ServerFrame::Reply(result) => {
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
            ServerFrame::Refused(error) => {
                stream.done = true;
                return Err(remote_error(peer, error));
            }
        }
    }
}

/// The peer's typed error, its message saying where it happened.
fn remote_error(peer: &str, error: CallError) -> CallError {
    CallError::new(error.code, format!("on `{peer}`: {}", error.message))
}
