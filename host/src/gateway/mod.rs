//! The HTTP gateway: HTTP/1.1 and HTTP/2 on loopback, one more door to the
//! one call pipeline.
//!
//! `POST /v1/call/{path}` decodes the JSON body into a [`CallRequest`],
//! runs it through [`ops::serve`](crate::ops::serve) like every door, and
//! encodes the response envelope — or, for a caller that accepts
//! `text/event-stream`, a subscription's events as server-sent events and
//! the reply as the last one. `GET /v1/ops`, `/v1/version` and `/v1/health`
//! are calls to the node's own operations. Typed errors map to HTTP
//! statuses with one JSON body shape everywhere.
//!
//! Before any of that, every request passes the same gate ([`auth`]): the
//! `Host` must be loopback, an `Origin` must be on the allow list (empty by
//! default; no CORS header is ever sent and preflights are refused), a
//! token in the query string is refused and logged, and the operator's
//! bearer token (`<data>/run/gateway.token`, 0600) is required — on health
//! too unless `public_health` is set. Bodies, headers, connections and slow
//! clients are bounded.

mod auth;
mod mcp;
mod openapi;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hearth_registry::{CallError, ErrorCode, ResponseEnvelope, Source};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::access::Access;
use crate::call::{CallRequest, Door, EventSink, Identity, OperationEnv};
use crate::config::GatewayConfig;
use crate::ops::Served;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Events buffered for an SSE client before the call waits for it.
const SSE_QUEUE: usize = 64;

/// A response body: a whole buffer or a stream of server-sent events.
type Body = BoxBody<Bytes, Infallible>;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The address could not be bound.
    #[error(
        "cannot listen for HTTP on {addr}: {source}; choose another `gateway.listen` or set `gateway.enabled = false`"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The bound gateway.
pub struct Gateway {
    listener: TcpListener,
    config: Arc<GatewayConfig>,
}

impl Gateway {
    /// Binds `config.listen`.
    pub async fn bind(config: &GatewayConfig) -> Result<Gateway, GatewayError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| GatewayError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Gateway {
            listener,
            config: Arc::new(config.clone()),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the task is dropped; `access` says who each bearer
    /// token stands for.
    pub async fn serve<E: OperationEnv>(self, node: Arc<E>, access: Arc<Access>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let door = Arc::new(Handler {
            config: self.config,
            access,
            mcp_sessions: mcp::Sessions::default(),
            requests: std::sync::Mutex::default(),
            subscriptions: tokio::sync::Mutex::new((None, Vec::new())),
        });
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = self.listener.accept().await else {
                continue;
            };
            let (door, node) = (door.clone(), node.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let (door, node) = (door.clone(), node.clone());
                    async move { Ok::<_, Infallible>(door.handle(&node, request).await) }
                });
                let mut builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(64 * 1024);
                builder.http2().max_header_list_size(64 * 1024);
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = builder.serve_connection(io, service).await;
                drop(permit);
            });
        }
    }
}

/// What each request is checked and served with.
struct Handler {
    config: Arc<GatewayConfig>,
    access: Arc<Access>,
    /// MCP sessions on `/mcp`.
    mcp_sessions: mcp::Sessions,
    /// Requests by endpoint and status (both bounded sets).
    requests: std::sync::Mutex<std::collections::BTreeMap<(&'static str, u16), u64>>,
    /// This node's subscription operations (`/node/ns/name`), and when they
    /// were last listed.
    subscriptions: tokio::sync::Mutex<(Option<std::time::Instant>, Vec<String>)>,
}

/// The one JSON error body, whatever went wrong.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    json_response(status, &body)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut text = serde_json::to_vec(value).unwrap_or_default();
    text.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The HTTP status of a typed error.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Denied => StatusCode::FORBIDDEN,
        ErrorCode::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Trapped => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Locked => StatusCode::LOCKED,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn call_error_response(err: &CallError) -> Response<Body> {
    error_response(status_of(err.code), err.code.as_str(), &err.message)
}

fn envelope_json(envelope: &ResponseEnvelope) -> serde_json::Value {
    let source = match &envelope.source {
        Source::Host => serde_json::json!("host"),
        Source::Plugin(name) => serde_json::json!({ "plugin": name }),
        Source::Remote(name) => serde_json::json!({ "remote": name }),
    };
    serde_json::json!({
        "output": envelope.output,
        "source": source,
        "request_id": envelope.request_id,
        "parent_request_id": envelope.parent_request_id,
    })
}

impl Handler {
    async fn handle<E: OperationEnv>(
        &self,
        node: &Arc<E>,
        request: Request<Incoming>,
    ) -> Response<Body> {
        let path = request.uri().path();
        let endpoint = match path {
            "/v1/health" => "health",
            "/v1/ops" => "ops",
            "/v1/version" => "version",
            "/v1/events" => "events",
            "/openapi.json" => "openapi",
            "/metrics" => "metrics",
            "/v1/auth/challenge" => "auth-challenge",
            "/v1/auth/session" => "auth-session",
            "/mcp" => "mcp",
            call if call.starts_with("/v1/call/") => "call",
            _ => "other",
        };
        let response = self.respond(node, request).await;
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests
            .entry((endpoint, response.status().as_u16()))
            .or_default() += 1;
        response
    }

    /// Gateway requests as Prometheus text.
    fn request_metrics(&self) -> String {
        let mut text = "# HELP hearth_gateway_requests_total HTTP requests by endpoint and status.\n# TYPE hearth_gateway_requests_total counter\n".to_owned();
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((endpoint, status), n) in requests.iter() {
            text.push_str(&format!(
                "hearth_gateway_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}\n"
            ));
        }
        text
    }

    async fn respond<E: OperationEnv>(
        &self,
        node: &Arc<E>,
        request: Request<Incoming>,
    ) -> Response<Body> {
        if let Err(refusal) = auth::admit(&self.config, &request) {
            return error_response(refusal.status, refusal.code, &refusal.message);
        }
        let path = request.uri().path().to_owned();
        match (request.method(), path.as_str()) {
            (&Method::POST, "/v1/auth/challenge") => return self.auth_challenge(request).await,
            (&Method::POST, "/v1/auth/session") => return self.auth_session(request).await,
            (_, "/v1/auth/challenge" | "/v1/auth/session") => {
                return error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method-not-allowed",
                    "use POST with a JSON body",
                );
            }
            (&Method::GET, "/v1/health") if self.config.public_health => {
                return json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "status": "ok", "node": node.node_name() }),
                );
            }
            _ => {}
        }
        let identity = match auth::bearer(&self.access, &request) {
            Ok(identity) => identity,
            Err(refusal) => {
                return error_response(refusal.status, refusal.code, &refusal.message);
            }
        };
        if path == "/mcp" {
            let env: Arc<dyn crate::call::DynOperationEnv> = node.clone();
            return self.mcp(env, identity, request).await;
        }
        match (request.method(), path.as_str()) {
            (&Method::GET, "/v1/health") => json_response(
                StatusCode::OK,
                &serde_json::json!({ "status": "ok", "node": node.node_name() }),
            ),
            (&Method::GET, "/v1/ops") => self.node_call(node, &identity, "/node/host/ops").await,
            (&Method::GET, "/v1/version") => {
                self.node_call(node, &identity, "/node/host/version").await
            }
            (&Method::GET, "/v1/events") => {
                let since = match request.headers().get("last-event-id").map(|v| v.to_str()) {
                    None => Some(0),
                    Some(Ok(id)) => id.trim().parse::<u64>().ok(),
                    Some(Err(_)) => None,
                };
                let Some(since) = since else {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "bad-request",
                        "Last-Event-ID must be an event id (a number)",
                    );
                };
                let call = CallRequest::from_client(
                    Door::Http,
                    identity,
                    "/node/host/events".to_owned(),
                    serde_json::json!({ "since": since }).to_string(),
                );
                sse(node.clone(), call, true)
            }
            (&Method::GET, "/metrics") => {
                match node_output(node, &identity, "/node/host/metrics").await {
                    Ok(text) => {
                        let mut text = text.as_str().unwrap_or_default().to_owned();
                        text.push_str(&self.request_metrics());
                        let mut response = Response::new(Full::new(Bytes::from(text)).boxed());
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            header::HeaderValue::from_static("text/plain; version=0.0.4"),
                        );
                        response
                    }
                    Err(err) => call_error_response(&err),
                }
            }
            (&Method::GET, "/openapi.json") => {
                let ops = match node_output(node, &identity, "/node/host/ops").await {
                    Ok(ops) => ops.as_array().cloned().unwrap_or_default(),
                    Err(err) => return call_error_response(&err),
                };
                json_response(
                    StatusCode::OK,
                    &openapi::document(node.node_name(), env!("CARGO_PKG_VERSION"), &ops),
                )
            }
            (&Method::POST, call) if call.starts_with("/v1/call/") => {
                let operation = format!("/{}", &call["/v1/call/".len()..]);
                self.call(node, identity, operation, request).await
            }
            (
                _,
                "/v1/health" | "/v1/ops" | "/v1/version" | "/v1/events" | "/metrics"
                | "/openapi.json",
            ) => error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "use GET",
            ),
            (_, call) if call.starts_with("/v1/call/") => error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "call operations with POST and the JSON input as the body",
            ),
            _ => error_response(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such endpoint: POST /v1/call/{path}, /v1/auth/challenge, /v1/auth/session; GET /v1/ops, /v1/version, /v1/events, /v1/health, /metrics, /openapi.json; /mcp (MCP, Streamable HTTP)",
            ),
        }
    }

    /// True when `path` names one of this node's subscriptions (listed
    /// again at most every few seconds), so a caller that did not ask for
    /// events is told at once instead of waiting for the first one.
    async fn is_subscription<E: OperationEnv>(&self, node: &Arc<E>, path: &str) -> bool {
        let mut cached = self.subscriptions.lock().await;
        if cached
            .0
            .is_none_or(|at| at.elapsed() > Duration::from_secs(5))
        {
            if let Ok(ops) = node_output(node, &Self::gateway(), "/node/host/ops").await {
                cached.1 = ops
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|op| op["kind"] == "subscription")
                    .filter_map(|op| op["path"].as_str().map(str::to_owned))
                    .collect();
            }
            cached.0 = Some(std::time::Instant::now());
        }
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (Some(node_part), Some(rest)) = (parts.next(), parts.next()) else {
            return false;
        };
        if node_part != "node" && node_part != node.node_name() {
            return false;
        }
        let local = format!("/node/{rest}");
        cached.1.contains(&local)
    }

    /// The gateway itself, for its own lookups (which operations stream).
    fn gateway() -> Identity {
        Identity::new("http:gateway", vec!["*".to_owned()])
    }

    async fn node_call<E: OperationEnv>(
        &self,
        node: &Arc<E>,
        identity: &Identity,
        path: &str,
    ) -> Response<Body> {
        match node_output(node, identity, path).await {
            Ok(output) => json_response(StatusCode::OK, &output),
            Err(err) => call_error_response(&err),
        }
    }

    async fn call<E: OperationEnv>(
        &self,
        node: &Arc<E>,
        identity: Identity,
        path: String,
        request: Request<Incoming>,
    ) -> Response<Body> {
        let wants_events = request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("text/event-stream")));
        let mut metadata = Vec::new();
        if let Some(key) = request.headers().get("idempotency-key") {
            match key.to_str() {
                Ok(key) => metadata.push((
                    crate::ops::native::msg::IDEMPOTENCY_KEY.to_owned(),
                    key.to_owned(),
                )),
                Err(_) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "bad-request",
                        "Idempotency-Key must be visible ASCII",
                    );
                }
            }
        }
        let timeout = match request.headers().get("timeout-ms").map(|v| v.to_str()) {
            None => None,
            Some(Ok(ms)) => match ms.parse::<u64>() {
                Ok(ms) => Some(Duration::from_millis(ms)),
                Err(_) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "bad-request",
                        "Timeout-Ms must be a number of milliseconds",
                    );
                }
            },
            Some(Err(_)) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "Timeout-Ms must be a number of milliseconds",
                );
            }
        };
        let body = match self.body(request).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let input = if body.iter().all(u8::is_ascii_whitespace) {
            "{}".to_owned()
        } else {
            match String::from_utf8(body.to_vec()) {
                Ok(text) => text,
                Err(_) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "bad-request",
                        "the body must be JSON text (UTF-8)",
                    );
                }
            }
        };
        let mut call = CallRequest::from_client(Door::Http, identity, path, input);
        call.metadata = metadata;
        call.timeout = timeout;
        if wants_events {
            return sse(node.clone(), call, false);
        }
        if self.is_subscription(node, &call.path).await {
            return error_response(
                StatusCode::NOT_ACCEPTABLE,
                "not-acceptable",
                "this operation streams events: ask for them with `Accept: text/event-stream`",
            );
        }
        let mut sink = NoEvents;
        match crate::ops::serve(|r| node.call(r), call, &mut sink).await {
            Served::Done(Ok(envelope)) => json_response(StatusCode::OK, &envelope_json(&envelope)),
            Served::Done(Err(err)) => call_error_response(&err),
            Served::Abandoned => error_response(
                StatusCode::NOT_ACCEPTABLE,
                "not-acceptable",
                "this operation streams events: ask for them with `Accept: text/event-stream`",
            ),
        }
    }
}

impl Handler {
    /// The request's body, within `gateway.max_body_bytes`.
    async fn body(&self, request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
        let limit = self.config.max_body_bytes;
        match Limited::new(request.into_body(), limit).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(_) => Err(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "resource-exhausted",
                &format!("the body is larger than gateway.max_body_bytes ({limit} bytes)"),
            )),
        }
    }

    /// A JSON body of type `T`, or the answer saying what is wrong with it.
    async fn json_body<T: serde::de::DeserializeOwned>(
        &self,
        request: Request<Incoming>,
        shape: &str,
    ) -> Result<T, Response<Body>> {
        let body = self.body(request).await?;
        serde_json::from_slice(&body).map_err(|e| {
            error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-input",
                &format!("the body must be {shape}: {e}"),
            )
        })
    }

    /// `POST /v1/auth/challenge {key, name}`: a challenge for the key, once
    /// an operator let it in (the request is held meanwhile).
    async fn auth_challenge(&self, request: Request<Incoming>) -> Response<Body> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ask {
            key: String,
            name: String,
        }
        let ask: Ask = match self
            .json_body(
                request,
                r#"{"key": "<64 hex digits>", "name": "<client name>"}"#,
            )
            .await
        {
            Ok(ask) => ask,
            Err(response) => return response,
        };
        let key = match crate::access::parse_key(&ask.key) {
            Ok(key) => key,
            Err(err) => return call_error_response(&err),
        };
        match self
            .access
            .challenge(&key, &ask.name, Door::Http, |_| {})
            .await
        {
            Ok(challenge) => json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "nonce": challenge.nonce,
                    "node_key": hex::encode(challenge.node_key),
                    "context": hearth_protocol::auth::CONTEXT,
                    "expires_in_s": 60,
                }),
            ),
            Err(err) => call_error_response(&err),
        }
    }

    /// `POST /v1/auth/session {key, nonce, signature}`: a session token for
    /// a proven key, bound to it and its scopes.
    async fn auth_session(&self, request: Request<Incoming>) -> Response<Body> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Proof {
            key: String,
            nonce: u64,
            signature: String,
        }
        let proof: Proof = match self
            .json_body(
                request,
                r#"{"key": "<64 hex digits>", "nonce": <number>, "signature": "<128 hex digits>"}"#,
            )
            .await
        {
            Ok(proof) => proof,
            Err(response) => return response,
        };
        let key = match crate::access::parse_key(&proof.key) {
            Ok(key) => key,
            Err(err) => return call_error_response(&err),
        };
        let Ok(signature) = hex::decode(&proof.signature) else {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-input",
                "the signature is 64 bytes in hex",
            );
        };
        let session = match self.access.prove(&key, proof.nonce, &signature).await {
            Ok((_, record)) => self.access.open_session(&record),
            Err(err) => Err(err),
        };
        match session {
            Ok(session) => json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "token": session.token,
                    "identity": session.identity.id,
                    "scopes": session.identity.scopes,
                    "expires_in_s": session.ttl.as_secs(),
                }),
            ),
            Err(err) => call_error_response(&err),
        }
    }
}

/// The output of one of the node's own operations, called for `identity`.
async fn node_output<E: OperationEnv>(
    node: &Arc<E>,
    identity: &Identity,
    path: &str,
) -> Result<serde_json::Value, CallError> {
    let request = CallRequest::from_client(
        Door::Http,
        identity.clone(),
        path.to_owned(),
        "{}".to_owned(),
    );
    node.call(request).await.map(|envelope| envelope.output)
}

/// The sink of a caller that did not ask for events: the first event
/// abandons the call (it is a subscription, answered 406).
struct NoEvents;

impl EventSink for NoEvents {
    async fn emit(&mut self, _: String) -> bool {
        false
    }
}

/// Server-sent events: each event as `id: n` + `data:`, then the reply as
/// `event: reply` (or `event: error`), then the end of the body. A client
/// that goes away abandons the call.
struct SseSink {
    tx: mpsc::Sender<Bytes>,
    next_id: u64,
    /// Node events carry their own id (resumable with `Last-Event-ID`).
    ids_from_payload: bool,
}

impl EventSink for SseSink {
    async fn emit(&mut self, payload: String) -> bool {
        self.next_id += 1;
        let own = self
            .ids_from_payload
            .then(|| {
                serde_json::from_str::<serde_json::Value>(&payload)
                    .ok()
                    .and_then(|v| v["id"].as_u64())
            })
            .flatten();
        let id = own.unwrap_or(self.next_id);
        let frame = format!("id: {id}\ndata: {}\n\n", one_line(&payload));
        self.tx.send(Bytes::from(frame)).await.is_ok()
    }
}

/// How often an idle event stream gets a comment, so proxies and clients
/// see the connection is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// SSE data is line-based; JSON from the node has no raw newlines, but a
/// plugin's event text might.
fn one_line(text: &str) -> String {
    text.replace('\n', "\ndata: ")
}

fn sse<E: OperationEnv>(node: Arc<E>, call: CallRequest, ids_from_payload: bool) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(SSE_QUEUE);
    tokio::spawn(async move {
        let mut sink = SseSink {
            tx: tx.clone(),
            next_id: 0,
            ids_from_payload,
        };
        let beat = tx.clone();
        let keep_alive = tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEEP_ALIVE).await;
                if beat
                    .send(Bytes::from_static(b": keep-alive\n\n"))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let served = crate::ops::serve(|r| node.call(r), call, &mut sink).await;
        keep_alive.abort();
        let last = match served {
            Served::Done(Ok(envelope)) => {
                format!("event: reply\ndata: {}\n\n", envelope_json(&envelope))
            }
            Served::Done(Err(err)) => format!(
                "event: error\ndata: {}\n\n",
                serde_json::json!({ "error": { "code": err.code.as_str(), "message": err.message } })
            ),
            Served::Abandoned => return,
        };
        let _ = tx.send(Bytes::from(last)).await;
    });
    event_stream(rx)
}

/// A `text/event-stream` response whose body is what arrives on `rx`,
/// until every sender is gone.
fn event_stream(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
