//! The node as an MCP server: every operation an agent may call is a tool.
//!
//! [`Engine`] speaks the Model Context Protocol (revision 2025-11-25,
//! accepting clients that ask for 2025-06-18 or 2025-03-26) over JSON-RPC
//! messages, whatever carries them: `host mcp` on stdio ([`stdio`]) and
//! `/mcp` on the gateway (Streamable HTTP, in `gateway::mcp`). It knows no
//! operation itself: the catalogue comes from `/node/host/tools` (the node
//! decides names, schemas and what this caller may see), calls go through a
//! [`Backend`] — the socket client for `host mcp`, the pipeline for the
//! gateway — so an agent holds exactly its identity's scopes.
//!
//! What it does: the lifecycle (`initialize`, `ping`), `tools/list` in
//! pages, `tools/call` (typed errors become `isError` results, never
//! protocol errors), `notifications/tools/list_changed` when the node says
//! its operations changed, progress for long calls when the client sent a
//! progress token, and `notifications/cancelled`, which drops the call (and
//! so cancels the operation).

pub mod stdio;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_registry::CallError;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::call::{CallRequest, Door, DynOperationEnv, EventSink, Identity};
use crate::ops::Served;
use crate::ops::tools::{MAX_EVENTS_FIELD, MAX_SECONDS_FIELD, Tool, WRAPPED_FIELD};

/// The revision this server speaks.
pub const LATEST_VERSION: &str = "2025-11-25";
/// Every revision a client may ask for, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
/// Tools per `tools/list` page.
const PAGE: usize = 50;
/// How often a long call reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// JSON-RPC error codes.
pub mod code {
    /// The message is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed.
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the engine's calls go: the node, as some identity.
pub trait Backend: Send + Sync + 'static {
    /// Calls `path` with JSON text `input`; a subscription's events go to
    /// `events`. Dropping the future abandons the call.
    fn call(
        &self,
        path: String,
        input: String,
        events: Option<mpsc::UnboundedSender<String>>,
    ) -> BoxFuture<'_, Result<Value, CallError>>;
}

impl Backend for crate::client::Client {
    fn call(
        &self,
        path: String,
        input: String,
        events: Option<mpsc::UnboundedSender<String>>,
    ) -> BoxFuture<'_, Result<Value, CallError>> {
        Box::pin(async move {
            let outcome = self
                .call_with_events(&path, &input, Default::default(), |event| {
                    if let Some(events) = &events {
                        let _ = events.send(event);
                    }
                })
                .await;
            match outcome {
                Ok(envelope) => Ok(envelope.output),
                Err(err) => Err(match err.call_error() {
                    Some(e) => e.clone(),
                    None => {
                        CallError::new(hearth_registry::ErrorCode::Unavailable, err.to_string())
                    }
                }),
            }
        })
    }
}

/// The node itself, called through the pipeline as one identity (the
/// gateway's `/mcp` sessions).
pub struct NodeBackend {
    env: Arc<dyn DynOperationEnv>,
    identity: Identity,
}

impl NodeBackend {
    /// Calls `env` as `identity`.
    pub fn new(env: Arc<dyn DynOperationEnv>, identity: Identity) -> Self {
        NodeBackend { env, identity }
    }

    /// Who the calls are made for.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

/// Passes a call's events on, or abandons a call that streams when nobody
/// asked for its events.
struct Forward(Option<mpsc::UnboundedSender<String>>);

impl EventSink for Forward {
    async fn emit(&mut self, payload: String) -> bool {
        self.0.as_ref().is_some_and(|tx| tx.send(payload).is_ok())
    }
}

impl Backend for NodeBackend {
    fn call(
        &self,
        path: String,
        input: String,
        events: Option<mpsc::UnboundedSender<String>>,
    ) -> BoxFuture<'_, Result<Value, CallError>> {
        Box::pin(async move {
            let request = CallRequest::from_client(Door::Mcp, self.identity.clone(), path, input);
            let mut sink = Forward(events);
            match crate::ops::serve(|r| self.env.call_boxed(r), request, &mut sink).await {
                Served::Done(outcome) => outcome.map(|envelope| envelope.output),
                Served::Abandoned => Err(CallError::new(
                    hearth_registry::ErrorCode::Failed,
                    "the operation streams events nobody asked for",
                )),
            }
        })
    }
}

/// A JSON-RPC error response.
pub fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message.into() } })
}

fn result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// What one message is, for a transport that must answer differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request: it gets a response.
    Request,
    /// A notification or a response from the client: nothing comes back.
    Notification,
    /// Not a JSON-RPC message (or a batch).
    Invalid,
}

/// Classifies `message`.
pub fn kind(message: &Value) -> Kind {
    let Some(object) = message.as_object() else {
        return Kind::Invalid;
    };
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return Kind::Invalid;
    }
    match (object.get("method"), object.get("id")) {
        (Some(Value::String(_)), Some(Value::String(_) | Value::Number(_))) => Kind::Request,
        (Some(Value::String(_)), None) => Kind::Notification,
        (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
            Kind::Notification
        }
        _ => Kind::Invalid,
    }
}

/// The error answering a message that is not a JSON-RPC request or
/// notification.
pub fn invalid(message: &Value) -> Value {
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let why = if message.is_array() {
        "batches are not supported: send one JSON-RPC message at a time"
    } else {
        "not a JSON-RPC 2.0 request or notification"
    };
    error(id, code::INVALID_REQUEST, why)
}

/// True for `initialize` requests.
pub fn is_initialize(message: &Value) -> bool {
    message["method"] == "initialize"
}

#[derive(Default)]
struct State {
    version: Option<String>,
    /// Requests running, by id (as JSON text): what cancels them.
    running: HashMap<String, Arc<Notify>>,
    /// Bumped whenever the node's operations change.
    generation: u64,
}

/// One MCP session.
pub struct Engine<B: Backend> {
    backend: Arc<B>,
    state: Mutex<State>,
    tools: tokio::sync::Mutex<Option<(u64, Arc<Vec<Tool>>)>>,
    /// Notifications not tied to a request (`tools/list_changed`).
    server_out: mpsc::Sender<Value>,
}

impl<B: Backend> Engine<B> {
    /// A session calling through `backend`; `server_out` receives what the
    /// server says on its own.
    pub fn new(backend: Arc<B>, server_out: mpsc::Sender<Value>) -> Arc<Self> {
        Arc::new(Engine {
            backend,
            state: Mutex::default(),
            tools: tokio::sync::Mutex::new(None),
            server_out,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The protocol revision agreed at `initialize`, if it happened.
    pub fn version(&self) -> Option<String> {
        self.lock().version.clone()
    }

    /// Follows the node's `/node/host/changes` until the node goes away,
    /// telling the client each time its tool list may have changed.
    pub async fn watch_changes(self: Arc<Self>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let this = self.clone();
        let follow = async move {
            let _ = this
                .backend
                .call("/node/host/changes".into(), "{}".into(), Some(tx))
                .await;
        };
        let forward = async {
            while rx.recv().await.is_some() {
                let initialized = {
                    let mut state = self.lock();
                    state.generation += 1;
                    state.version.is_some()
                };
                if initialized {
                    let _ = self
                        .server_out
                        .try_send(notification("notifications/tools/list_changed", json!({})));
                }
            }
        };
        tokio::join!(follow, forward);
    }

    /// Handles one message; returns the response to a request. Progress
    /// for a request goes to `out` while it runs.
    pub async fn handle(
        &self,
        message: Value,
        out: &mpsc::UnboundedSender<Value>,
    ) -> Option<Value> {
        match kind(&message) {
            Kind::Invalid => return Some(invalid(&message)),
            Kind::Notification => {
                if message["method"] == "notifications/cancelled"
                    && let Some(id) = message["params"].get("requestId")
                {
                    let running = self.lock().running.get(&id.to_string()).cloned();
                    if let Some(cancel) = running {
                        cancel.notify_one();
                    }
                }
                return None;
            }
            Kind::Request => {}
        }
        let id = message["id"].clone();
        let params = message.get("params").cloned().unwrap_or(json!({}));
        let method = message["method"].as_str().unwrap_or_default();
        if method != "initialize" && method != "ping" && self.version().is_none() {
            return Some(error(id, code::INVALID_REQUEST, "send `initialize` first"));
        }
        let answer = match method {
            "initialize" => Ok(self.initialize(&params)),
            "ping" => Ok(json!({})),
            // This server sends no log messages; the level is accepted so
            // clients that set one proceed.
            "logging/setLevel" => match params["level"].as_str() {
                Some(
                    "debug" | "info" | "notice" | "warning" | "error" | "critical" | "alert"
                    | "emergency",
                ) => Ok(json!({})),
                _ => Err((
                    code::INVALID_PARAMS,
                    "level must be an RFC 5424 level name, e.g. `info`".to_owned(),
                )),
            },
            "tools/list" => self.list(&params).await,
            "tools/call" => {
                let cancel = Arc::new(Notify::new());
                self.lock().running.insert(id.to_string(), cancel.clone());
                let called = tokio::select! {
                    called = self.call(&params, out) => Some(called),
                    () = cancel.notified() => None,
                };
                self.lock().running.remove(&id.to_string());
                // A cancelled request gets no response.
                called?
            }
            other => Err((
                code::METHOD_NOT_FOUND,
                format!("no method `{other}`: this server offers tools (tools/list, tools/call)"),
            )),
        };
        Some(match answer {
            Ok(value) => result(id, value),
            Err((code, message)) => error(id, code, message),
        })
    }

    fn initialize(&self, params: &Value) -> Value {
        let asked = params["protocolVersion"].as_str().unwrap_or_default();
        let version = if SUPPORTED_VERSIONS.contains(&asked) {
            asked
        } else {
            LATEST_VERSION
        };
        self.lock().version = Some(version.to_owned());
        json!({
            "protocolVersion": version,
            "capabilities": { "tools": { "listChanged": true }, "logging": {} },
            "serverInfo": {
                "name": "hearth",
                "title": "Hearth node",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "instructions": "Each tool is an operation of this Hearth node or of a node it is paired with (`worker-1__…`); the tool's title is its path. You see only what your identity's scopes allow.",
        })
    }

    /// The catalogue, fetched again after the node said it changed.
    async fn catalogue(&self) -> Result<Arc<Vec<Tool>>, (i64, String)> {
        let generation = self.lock().generation;
        let mut cached = self.tools.lock().await;
        if let Some((at, tools)) = cached.as_ref()
            && *at == generation
        {
            return Ok(tools.clone());
        }
        let output = self
            .backend
            .call("/node/host/tools".into(), "{}".into(), None)
            .await
            .map_err(|e| {
                (
                    code::INTERNAL_ERROR,
                    format!("cannot list the node's tools: {e}"),
                )
            })?;
        let tools: Vec<Tool> = serde_json::from_value(output["tools"].clone())
            .map_err(|e| (code::INTERNAL_ERROR, format!("unreadable tool list: {e}")))?;
        let tools = Arc::new(tools);
        *cached = Some((generation, tools.clone()));
        Ok(tools)
    }

    async fn list(&self, params: &Value) -> Result<Value, (i64, String)> {
        let tools = self.catalogue().await?;
        let start = match params.get("cursor") {
            None | Some(Value::Null) => 0,
            Some(cursor) => cursor
                .as_str()
                .and_then(|c| c.parse::<usize>().ok())
                .filter(|&c| c <= tools.len())
                .ok_or((
                    code::INVALID_PARAMS,
                    "invalid cursor: pass back the nextCursor of the previous page".to_owned(),
                ))?,
        };
        let end = (start + PAGE).min(tools.len());
        let page: Vec<Value> = tools[start..end].iter().map(describe).collect();
        let mut answer = json!({ "tools": page });
        if end < tools.len() {
            answer["nextCursor"] = json!(end.to_string());
        }
        Ok(answer)
    }

    async fn call(
        &self,
        params: &Value,
        out: &mpsc::UnboundedSender<Value>,
    ) -> Result<Value, (i64, String)> {
        let name = params["name"].as_str().unwrap_or_default();
        let tools = self.catalogue().await?;
        let Some(tool) = tools.iter().find(|t| t.name == name) else {
            return Err((
                code::INVALID_PARAMS,
                format!("no tool `{name}`: see tools/list"),
            ));
        };
        let mut arguments = match params.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(Value::Object(args)) => Value::Object(args.clone()),
            Some(_) => {
                return Err((code::INVALID_PARAMS, "arguments must be an object".into()));
            }
        };
        let progress = params["_meta"].get("progressToken").cloned();
        let subscription = tool.kind == "subscription";
        let limits = subscription.then(|| collect_limits(&mut arguments));
        let input = if tool.wrapped {
            arguments.get(WRAPPED_FIELD).cloned().unwrap_or(Value::Null)
        } else {
            arguments
        };
        let reporter = Progress {
            token: progress,
            out: out.clone(),
        };
        let outcome = match limits {
            Some((max_events, max_time)) => {
                self.collect(tool, input, max_events, max_time, &reporter)
                    .await
            }
            None => {
                let call = self
                    .backend
                    .call(tool.path.clone(), input.to_string(), None);
                reporter.while_running(call).await
            }
        };
        Ok(tool_result(outcome))
    }

    /// Runs a subscription until `max_events` arrived, `max_time` passed or
    /// it ended by itself; then drops it (which ends it on the node).
    async fn collect(
        &self,
        tool: &Tool,
        input: Value,
        max_events: usize,
        max_time: Duration,
        reporter: &Progress,
    ) -> Result<Value, CallError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let call = self
            .backend
            .call(tool.path.clone(), input.to_string(), Some(tx));
        tokio::pin!(call);
        let deadline = tokio::time::sleep(max_time);
        tokio::pin!(deadline);
        let mut events = Vec::new();
        let ended = loop {
            tokio::select! {
                biased;
                Some(event) = rx.recv() => {
                    events.push(serde_json::from_str(&event).unwrap_or(Value::String(event)));
                    reporter.report(events.len() as f64, Some(max_events as f64), "events collected");
                    if events.len() >= max_events {
                        break json!({ "events": events, "ended": "count" });
                    }
                }
                reply = &mut call => {
                    while let Ok(event) = rx.try_recv() {
                        events.push(serde_json::from_str(&event).unwrap_or(Value::String(event)));
                    }
                    let reply = reply?;
                    break json!({ "events": events, "ended": "reply", "reply": reply });
                }
                () = &mut deadline => break json!({ "events": events, "ended": "time" }),
            }
        };
        Ok(ended)
    }
}

/// `_max_events` and `_max_seconds` of a subscription tool's arguments,
/// removed from them, with their defaults and bounds.
fn collect_limits(arguments: &mut Value) -> (usize, Duration) {
    let mut take = |field: &str, default: u64, max: u64| {
        arguments
            .as_object_mut()
            .and_then(|a| a.remove(field))
            .and_then(|v| v.as_u64())
            .unwrap_or(default)
            .clamp(1, max)
    };
    let events = take(MAX_EVENTS_FIELD, 20, 1000) as usize;
    let seconds = take(MAX_SECONDS_FIELD, 10, 300);
    (events, Duration::from_secs(seconds))
}

/// Progress notifications for one request, when it sent a token.
struct Progress {
    token: Option<Value>,
    out: mpsc::UnboundedSender<Value>,
}

impl Progress {
    fn report(&self, progress: f64, total: Option<f64>, message: &str) {
        let Some(token) = &self.token else { return };
        let mut params =
            json!({ "progressToken": token, "progress": progress, "message": message });
        if let Some(total) = total {
            params["total"] = json!(total);
        }
        let _ = self
            .out
            .send(notification("notifications/progress", params));
    }

    /// Awaits `call`, reporting the seconds it has run every second.
    async fn while_running<T>(&self, call: impl Future<Output = T>) -> T {
        if self.token.is_none() {
            return call.await;
        }
        tokio::pin!(call);
        let started = Instant::now();
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        loop {
            tokio::select! {
                done = &mut call => return done,
                _ = ticks.tick() => {
                    let secs = started.elapsed().as_secs();
                    self.report(secs as f64, None, &format!("running for {secs} s"));
                }
            }
        }
    }
}

/// A tool as `tools/list` shows it.
fn describe(tool: &Tool) -> Value {
    let mut value = json!({
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "annotations": tool.annotations,
    });
    if let Some(output) = &tool.output_schema {
        value["outputSchema"] = output.clone();
    }
    value
}

/// A call's outcome as a tool result: the output as structured content
/// (when an object) and as text; a typed error as an `isError` result.
fn tool_result(outcome: Result<Value, CallError>) -> Value {
    match outcome {
        Ok(output) => {
            let text = serde_json::to_string(&output).unwrap_or_default();
            let mut value = json!({
                "content": [{ "type": "text", "text": text }],
                "isError": false,
            });
            if output.is_object() {
                value["structuredContent"] = output;
            }
            value
        }
        Err(err) => json!({
            "content": [{ "type": "text", "text": format!("{}: {}", err.code.as_str(), err.message) }],
            "isError": true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node with `n` echo-like tools that answers calls with their input.
    struct Fake(usize);

    impl Backend for Fake {
        fn call(
            &self,
            path: String,
            input: String,
            _: Option<mpsc::UnboundedSender<String>>,
        ) -> BoxFuture<'_, Result<Value, CallError>> {
            let n = self.0;
            Box::pin(async move {
                if path == "/node/host/tools" {
                    let tools: Vec<Value> = (0..n)
                        .map(|i| {
                            json!({
                                "name": format!("t_{i:03}"), "title": format!("/node/t/{i:03}"),
                                "description": "d", "path": format!("/node/t/{i:03}"),
                                "kind": "query", "input_schema": {"type": "object"},
                                "output_schema": null, "wrapped": false, "annotations": {},
                            })
                        })
                        .collect();
                    return Ok(json!({ "tools": tools, "unreachable": [] }));
                }
                Ok(json!({ "path": path, "input": serde_json::from_str::<Value>(&input).unwrap() }))
            })
        }
    }

    #[tokio::test]
    async fn tools_list_in_pages_and_calls_need_initialize() {
        let engine = Engine::new(Arc::new(Fake(120)), mpsc::channel(1).0);
        let out = mpsc::unbounded_channel().0;
        let request = |id: u64, method: &str, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let early = engine
            .handle(request(1, "tools/list", json!({})), &out)
            .await
            .unwrap();
        assert_eq!(early["error"]["code"], code::INVALID_REQUEST);
        let init = engine
            .handle(
                request(2, "initialize", json!({"protocolVersion": "2024-01-01"})),
                &out,
            )
            .await
            .unwrap();
        assert_eq!(
            init["result"]["protocolVersion"], LATEST_VERSION,
            "unknown asks get the latest"
        );
        let mut names = Vec::new();
        let mut cursor = Value::Null;
        for id in 3.. {
            let page = engine
                .handle(request(id, "tools/list", json!({ "cursor": cursor })), &out)
                .await
                .unwrap();
            let tools = page["result"]["tools"].as_array().unwrap();
            assert!(tools.len() <= PAGE);
            names.extend(tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()));
            cursor = page["result"]
                .get("nextCursor")
                .cloned()
                .unwrap_or(Value::Null);
            if cursor.is_null() {
                break;
            }
        }
        assert_eq!(names.len(), 120);
        assert_eq!(
            names
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            120
        );
        let bad = engine
            .handle(request(9, "tools/list", json!({ "cursor": "999" })), &out)
            .await
            .unwrap();
        assert_eq!(bad["error"]["code"], code::INVALID_PARAMS);
        let called = engine
            .handle(
                request(
                    10,
                    "tools/call",
                    json!({"name": "t_007", "arguments": {"a": 1}}),
                ),
                &out,
            )
            .await
            .unwrap();
        assert_eq!(called["result"]["structuredContent"]["path"], "/node/t/007");
        assert_eq!(called["result"]["structuredContent"]["input"]["a"], 1);
        let unknown = engine
            .handle(request(11, "nope", json!({})), &out)
            .await
            .unwrap();
        assert_eq!(unknown["error"]["code"], code::METHOD_NOT_FOUND);
    }

    #[test]
    fn messages_are_classified() {
        assert_eq!(
            kind(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
            Kind::Request
        );
        assert_eq!(
            kind(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            Kind::Notification
        );
        assert_eq!(
            kind(&json!({"jsonrpc": "2.0", "id": 1, "result": {}})),
            Kind::Notification
        );
        assert_eq!(
            kind(&json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])),
            Kind::Invalid
        );
        assert_eq!(kind(&json!({"id": 1, "method": "ping"})), Kind::Invalid);
        assert_eq!(
            kind(&json!({"jsonrpc": "2.0", "id": null, "method": "ping"})),
            Kind::Invalid
        );
    }

    #[test]
    fn errors_are_results_and_limits_are_bounded() {
        let err = tool_result(Err(CallError::new(
            hearth_registry::ErrorCode::Denied,
            "no",
        )));
        assert_eq!(err["isError"], true);
        assert_eq!(err["content"][0]["text"], "denied: no");
        let ok = tool_result(Ok(json!({"a": 1})));
        assert_eq!(ok["structuredContent"]["a"], 1);
        assert!(tool_result(Ok(json!(3))).get("structuredContent").is_none());
        let mut args = json!({ "_max_events": 5000, "_max_seconds": 0, "x": 1 });
        assert_eq!(collect_limits(&mut args), (1000, Duration::from_secs(1)));
        assert_eq!(args, json!({ "x": 1 }));
    }
}
