//! `/mcp`: the MCP server over Streamable HTTP (revision 2025-11-25).
//!
//! `POST` carries one JSON-RPC message: `initialize` opens a session and
//! answers with its `Mcp-Session-Id`; every later message names it (400
//! without, 404 for one this caller does not own or that ended). A request
//! is answered with JSON, or with server-sent events (progress, then the
//! response) when it sent a progress token; a notification or response gets
//! 202. `GET` opens the session's stream of server notifications
//! (`tools/list_changed`); `DELETE` ends the session. `MCP-Protocol-Version`,
//! when sent, must be a revision this server speaks (400). The gateway's
//! gate (loopback `Host`, `Origin` allow list, bearer token or client
//! session) has run before any of this; a session belongs to the identity
//! that opened it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Body, Handler};
use crate::call::{DynOperationEnv, Identity};
use crate::mcp::{self, Engine, Kind, NodeBackend, SUPPORTED_VERSIONS, code};

/// Sessions open at once; the least recently used goes first beyond it.
const MAX_SESSIONS: usize = 256;
/// A session unused this long ends.
const IDLE: Duration = Duration::from_secs(3600);
/// The session header.
const SESSION: &str = "mcp-session-id";

/// One agent's session.
pub(super) struct Session {
    engine: Arc<Engine<NodeBackend>>,
    owner: String,
    /// Server notifications, until a `GET` takes them.
    server: tokio::sync::Mutex<Option<mpsc::Receiver<Value>>>,
    watcher: tokio::task::AbortHandle,
    used: Mutex<Instant>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// The open sessions.
#[derive(Default)]
pub(super) struct Sessions {
    open: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self, env: Arc<dyn DynOperationEnv>, identity: Identity) -> (String, Arc<Session>) {
        let mut bytes = [0u8; 16];
        let _ = getrandom::getrandom(&mut bytes);
        let id = hex::encode(bytes);
        let (server_tx, server_rx) = mpsc::channel(64);
        let owner = identity.id.clone();
        let engine = Engine::new(Arc::new(NodeBackend::new(env, identity)), server_tx);
        let watcher = tokio::spawn(engine.clone().watch_changes()).abort_handle();
        let session = Arc::new(Session {
            engine,
            owner,
            server: tokio::sync::Mutex::new(Some(server_rx)),
            watcher,
            used: Mutex::new(Instant::now()),
        });
        let mut open = self.lock();
        open.retain(|_, s| s.used.lock().map(|t| t.elapsed() < IDLE).unwrap_or(false));
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| *s.used.lock().unwrap_or_else(|p| p.into_inner()))
                .map(|(id, _)| id.clone())
        {
            open.remove(&oldest);
        }
        open.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The session `id`, if `identity` owns it.
    fn find(&self, id: &str, identity: &Identity) -> Option<Arc<Session>> {
        let open = self.lock();
        let session = open.get(id)?;
        if session.owner != identity.id {
            return None;
        }
        *session.used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Some(session.clone())
    }
}

/// A JSON-RPC error as an HTTP answer.
fn rpc_error(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    super::json_response(status, &mcp::error(Value::Null, code, message))
}

fn header_has(request: &Request<Incoming>, name: header::HeaderName, needle: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains(needle)))
}

impl Handler {
    /// Serves `/mcp` for `identity`.
    pub(super) async fn mcp(
        &self,
        env: Arc<dyn DynOperationEnv>,
        identity: Identity,
        request: Request<Incoming>,
    ) -> Response<Body> {
        if let Some(version) = request.headers().get("mcp-protocol-version") {
            let known = version
                .to_str()
                .is_ok_and(|v| SUPPORTED_VERSIONS.contains(&v.trim()));
            if !known {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    code::INVALID_REQUEST,
                    &format!(
                        "unsupported MCP-Protocol-Version; this server speaks {}",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                );
            }
        }
        let session_id = request
            .headers()
            .get(SESSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match *request.method() {
            Method::POST => self.mcp_post(env, identity, session_id, request).await,
            Method::GET => {
                if !header_has(&request, header::ACCEPT, "text/event-stream") {
                    return rpc_error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        code::INVALID_REQUEST,
                        "GET opens the server's event stream: accept text/event-stream",
                    );
                }
                let Some(session) = self.session(session_id.as_deref(), &identity) else {
                    return unknown_session(session_id.is_some());
                };
                let Some(rx) = session.server.lock().await.take() else {
                    return rpc_error(
                        StatusCode::CONFLICT,
                        code::INVALID_REQUEST,
                        "this session's event stream is already open",
                    );
                };
                server_stream(session, rx)
            }
            Method::DELETE => {
                let Some(id) = session_id else {
                    return unknown_session(false);
                };
                if self.session(Some(&id), &identity).is_none() {
                    return unknown_session(true);
                }
                self.mcp_sessions.lock().remove(&id);
                let mut response = Response::new(Full::new(Bytes::new()).boxed());
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            }
            _ => rpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                code::INVALID_REQUEST,
                "use POST (messages), GET (the server's stream) or DELETE (end the session)",
            ),
        }
    }

    fn session(&self, id: Option<&str>, identity: &Identity) -> Option<Arc<Session>> {
        self.mcp_sessions.find(id?, identity)
    }

    async fn mcp_post(
        &self,
        env: Arc<dyn DynOperationEnv>,
        identity: Identity,
        session_id: Option<String>,
        request: Request<Incoming>,
    ) -> Response<Body> {
        if !header_has(&request, header::CONTENT_TYPE, "application/json") {
            return rpc_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::INVALID_REQUEST,
                "send the message as Content-Type: application/json",
            );
        }
        let accepts_json = header_has(&request, header::ACCEPT, "application/json");
        let accepts_sse = header_has(&request, header::ACCEPT, "text/event-stream");
        if !(accepts_json && accepts_sse) {
            return rpc_error(
                StatusCode::NOT_ACCEPTABLE,
                code::INVALID_REQUEST,
                "accept both application/json and text/event-stream",
            );
        }
        let body = match self.body(request).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let message: Value = match serde_json::from_slice(&body) {
            Ok(message) => message,
            Err(e) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    code::PARSE_ERROR,
                    &format!("the body is not JSON: {e}"),
                );
            }
        };
        let kind = mcp::kind(&message);
        if kind == Kind::Invalid {
            return super::json_response(StatusCode::BAD_REQUEST, &mcp::invalid(&message));
        }
        let (id, session) = if mcp::is_initialize(&message) && kind == Kind::Request {
            self.mcp_sessions.open(env, identity)
        } else {
            match self.session(session_id.as_deref(), &identity) {
                Some(session) => (session_id.unwrap_or_default(), session),
                None => return unknown_session(session_id.is_some()),
            }
        };
        if kind == Kind::Notification {
            session
                .engine
                .handle(message, &mpsc::unbounded_channel().0)
                .await;
            let mut response = Response::new(Full::new(Bytes::new()).boxed());
            *response.status_mut() = StatusCode::ACCEPTED;
            return response;
        }
        let streams = message["params"]["_meta"].get("progressToken").is_some();
        let mut response = if streams {
            request_stream(session.engine.clone(), message)
        } else {
            let (out, _) = mpsc::unbounded_channel();
            match session.engine.handle(message, &out).await {
                Some(answer) => super::json_response(StatusCode::OK, &answer),
                // Cancelled meanwhile: nothing to say.
                None => {
                    let mut response = Response::new(Full::new(Bytes::new()).boxed());
                    *response.status_mut() = StatusCode::ACCEPTED;
                    response
                }
            }
        };
        if let Ok(value) = header::HeaderValue::from_str(&id) {
            response.headers_mut().insert(SESSION, value);
        }
        response
    }
}

fn unknown_session(named: bool) -> Response<Body> {
    if named {
        rpc_error(
            StatusCode::NOT_FOUND,
            code::INVALID_REQUEST,
            "no such session (it ended, or is not yours): initialize a new one",
        )
    } else {
        rpc_error(
            StatusCode::BAD_REQUEST,
            code::INVALID_REQUEST,
            "send the Mcp-Session-Id header from initialize",
        )
    }
}

fn sse_message(value: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {value}\n\n"))
}

/// One request answered as server-sent events: its progress, then it.
fn request_stream(engine: Arc<Engine<NodeBackend>>, message: Value) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let (out, mut progress) = mpsc::unbounded_channel::<Value>();
        let handled = engine.handle(message, &out);
        tokio::pin!(handled);
        let answer = loop {
            tokio::select! {
                biased;
                Some(note) = progress.recv() => {
                    if tx.send(sse_message(&note)).await.is_err() {
                        // The client went away: dropping the call cancels it.
                        return;
                    }
                }
                answer = &mut handled => break answer,
            }
        };
        while let Ok(note) = progress.try_recv() {
            let _ = tx.send(sse_message(&note)).await;
        }
        if let Some(answer) = answer {
            let _ = tx.send(sse_message(&answer)).await;
        }
    });
    super::event_stream(rx)
}

/// The session's own stream: server notifications, with keep-alives. When
/// the client goes away the notifications wait for its next `GET`.
fn server_stream(session: Arc<Session>, mut notes: mpsc::Receiver<Value>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                note = notes.recv() => {
                    let Some(note) = note else { return };
                    if tx.send(sse_message(&note)).await.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep(super::KEEP_ALIVE) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        break;
                    }
                }
            }
        }
        *session.server.lock().await = Some(notes);
    });
    super::event_stream(rx)
}
