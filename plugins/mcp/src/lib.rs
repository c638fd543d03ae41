//! `mcp`: every tool of one MCP server as a Hearth operation.
//!
//! Load it once per server, under the server's name (`component = "mcp"`):
//!
//! | config key     | meaning                                                     |
//! |----------------|-------------------------------------------------------------|
//! | `url`          | the server's Streamable HTTP endpoint, within `grants.http` |
//! | `command`      | or: a stdio server's argument list, within `grants.process` |
//! | `bearer_token` | sent as `Authorization: Bearer …` (usually `{ secret = … }`) |
//! | `include`      | only these tools (a list of tool names)                     |
//! | `exclude`      | never these tools                                           |
//!
//! At load it opens a session (`initialize`, then
//! `notifications/initialized`), lists the tools (every page) and offers
//! each as an operation: its name by [`hearth_sdk::names`], a query when
//! the tool is annotated `readOnlyHint`, a mutation otherwise, its
//! `inputSchema` as input and its `outputSchema` (else a `content` wrapper)
//! as output. A call is `tools/call`: `structuredContent` is the output when
//! present, else `{ content }`; `isError` results fail with the server's
//! text; JSON-RPC errors map to typed errors.
//!
//! A call the caller abandons is cancelled on the server
//! (`notifications/cancelled`): over HTTP the plugin stops waiting a
//! little before the deadline and sends it; over stdio the host writes it
//! when the call ends unanswered (the process's abandon line), whatever
//! ended it. `notifications/tools/list_changed`, wherever it is read,
//! makes the host list the tools again. Pings from the server are
//! answered; other server requests are refused (this client offers no
//! sampling, roots or elicitation).
//!
//! A session the HTTP server forgot (404) is opened again once. A stdio
//! server runs as a host process (`grants.process`) shared by the
//! plugin's instances: the process memo says its session is open, so a
//! new process (started again after it died, which fails the call it died
//! in with `unavailable`) gets a new session and the others none.
//! Responses are matched by id; lines of abandoned calls are skipped.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use hearth_sdk::names::{UniqueNames, operation_name};
use hearth_sdk::prelude::*;
use hearth_sdk::{DynamicOp, OpKind};
use serde_json::{Value, json};

/// The protocol revision this client speaks.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// The stdio process memo once its session is open.
const SESSION_OPEN: &str = "mcp-session-open";

/// One tool, as offered.
#[derive(Clone)]
struct Tool {
    /// The operation name.
    op: String,
    /// The tool's own name.
    name: String,
    read_only: bool,
    description: String,
    input_schema: Value,
    output_schema: Option<Value>,
}

/// What this instance keeps (a warm instance, between calls).
#[derive(Default)]
struct State {
    /// The HTTP session: `Some(None)` when the server gave no session id.
    session: Option<Option<String>>,
    tools: Option<Vec<Tool>>,
    next_id: u64,
    /// Random per instance, so ids never repeat across instances sharing
    /// one stdio process.
    salt: u64,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Where the server is.
enum Server {
    Http { url: String },
    Stdio { argv: Vec<String> },
}

impl Server {
    fn configured() -> Result<Server, CallError> {
        if let Some(argv) = config::get_json::<Vec<String>>("command")? {
            return Ok(Server::Stdio { argv });
        }
        match config::get("url")? {
            Some(url) => Ok(Server::Http { url }),
            None => Err(CallError::invalid_input(
                "config `url` is not set: give the server's Streamable HTTP endpoint, such as \"http://127.0.0.1:3001/mcp\", or `command`, a stdio server's argument list",
            )),
        }
    }
}

/// When a request must be answered by: the call's deadline, if the call
/// has one the plugin knows (listing runs under the host's own bound).
#[derive(Clone, Copy)]
struct Deadline(Option<Instant>);

impl Deadline {
    fn of(cx: &Context) -> Deadline {
        Deadline(Some(Instant::now() + cx.time_left()))
    }

    /// How long to wait for an answer over HTTP: until a little before the
    /// deadline, leaving time to cancel the request on the server.
    fn wait(self) -> Option<Duration> {
        let left = self.0?.saturating_duration_since(Instant::now());
        let margin = (left / 10).clamp(Duration::from_millis(50), Duration::from_millis(500));
        Some(left.saturating_sub(margin).max(Duration::from_millis(1)))
    }
}

/// A request id no other instance uses: `<random>-<n>`.
fn next_id() -> Value {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.salt == 0 {
            use std::hash::{BuildHasher, Hasher};
            s.salt = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                | 1;
        }
        s.next_id += 1;
        json!(format!("{:x}-{}", s.salt, s.next_id))
    })
}

fn request(id: &Value, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// `notifications/cancelled` for request `id`.
fn cancel(id: &Value, reason: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": { "requestId": id, "reason": reason }
    })
}

/// Whether `message` is the response to request `id`.
fn answers(message: &Value, id: &Value) -> bool {
    &message["id"] == id && (message.get("result").is_some() || message.get("error").is_some())
}

/// A message from the server that is not the awaited response: tool
/// changes are passed on, pings answered, other requests refused (the
/// reply to send, if any).
fn incoming(message: &Value) -> Option<Value> {
    let method = message["method"].as_str()?;
    if method == "notifications/tools/list_changed" {
        STATE.with(|s| s.borrow_mut().tools = None);
        hearth_sdk::discovery::operations_changed();
        return None;
    }
    let id = message.get("id")?;
    Some(if method == "ping" {
        json!({ "jsonrpc": "2.0", "id": id, "result": {} })
    } else {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": { "code": -32601, "message": format!("this client (a Hearth node) does not offer `{method}`") }
        })
    })
}

/// Writes one message to the stdio server; for a request, reads until its
/// response (passing other messages to [`incoming`], skipping answers of
/// abandoned calls). Until the response comes, the host holds a
/// `notifications/cancelled` to write should the call end first.
fn exchange_stdio(argv: &[String], message: &Value) -> Result<Option<Value>, CallError> {
    use hearth_sdk::process;
    process::write_line(argv, &message.to_string())?;
    let Some(id) = message.get("id") else {
        return Ok(None);
    };
    // `initialize` must not be cancelled.
    let cancellable = message["method"] != "initialize";
    if cancellable {
        let line = cancel(id, "the caller went away or its deadline passed").to_string();
        process::on_abandon(argv, Some(&line))?;
    }
    let answer = loop {
        // The call's deadline ends this loop if the server never answers.
        let line = process::read_line(argv, 1000).map_err(|e| match e.code {
            ErrorCode::Unavailable => CallError {
                code: ErrorCode::Unavailable,
                message: format!(
                    "the MCP server exited during the call ({}); it is started again for the next one",
                    e.message
                ),
            },
            _ => e,
        })?;
        let Some(line) = line else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if answers(&value, id) {
            break value;
        }
        if let Some(reply) = incoming(&value) {
            process::write_line(argv, &reply.to_string())?;
        }
    };
    if cancellable {
        process::on_abandon(argv, None)?;
    }
    Ok(Some(answer))
}

/// Calls `method` on a stdio server, opening the process's session first
/// when no instance has yet.
fn rpc_stdio(argv: &[String], method: &str, params: Value) -> Result<Value, CallError> {
    use hearth_sdk::process;
    if process::memo(argv)?.as_deref() != Some(SESSION_OPEN) {
        let (init, initialized) = handshake(&next_id());
        result_of(exchange_stdio(argv, &init)?)?;
        exchange_stdio(argv, &initialized)?;
        process::set_memo(argv, SESSION_OPEN)?;
    }
    result_of(exchange_stdio(argv, &request(&next_id(), method, params))?)
}

/// Posts one JSON-RPC message; returns the response to it if it is a
/// request (None for a notification or a reply) and the session id the
/// server gave. Over an event stream, other messages go to [`incoming`]
/// and reading stops at the response.
fn post(
    url: &str,
    message: &Value,
    session: Option<&str>,
    deadline: Deadline,
) -> Result<(Option<Value>, Option<String>), CallError> {
    let mut request = http::post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL_VERSION)
        .json(message)?;
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    if let Some(token) = config::get("bearer_token")? {
        request = request.bearer(&token);
    }
    if let Some(wait) = deadline.wait() {
        request = request.timeout(wait);
    }
    let id = message
        .get("id")
        .filter(|_| message.get("method").is_some());
    let mut events = hearth_sdk::sse::EventStream::default();
    let mut body = Vec::new();
    let mut answer = None;
    let mut is_sse = false;
    let head = request.send_streaming(|head, chunk| {
        is_sse = head
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"));
        if !is_sse || !(200..300).contains(&head.status) {
            body.extend_from_slice(chunk);
            return Ok(body.len() <= http::DEFAULT_MAX_RESPONSE_BYTES);
        }
        for event in events.push(chunk) {
            let Ok(value) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            if id.is_some_and(|id| answers(&value, id)) {
                answer = Some(value);
                return Ok(false);
            }
            // Answered now: the server may wait for it before it answers.
            if let Some(reply) = incoming(&value) {
                post(url, &reply, session, deadline)?;
            }
        }
        Ok(true)
    });
    let head = match head {
        Ok(head) => head,
        Err(e) if e.code == ErrorCode::Timeout => {
            if let Some(id) = id {
                let cancelled = cancel(id, "the caller's deadline passed");
                let _ = post(url, &cancelled, session, Deadline(None));
            }
            return Err(CallError {
                code: ErrorCode::Timeout,
                message: format!(
                    "the MCP server did not answer `{}` before the call's deadline; the request was cancelled on the server",
                    message["method"].as_str().unwrap_or("?")
                ),
            });
        }
        Err(e) => return Err(e),
    };
    let new_session = head
        .headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone());
    if head.status == 404 && session.is_some() {
        return Err(CallError {
            code: ErrorCode::NotFound,
            message: "session expired".into(),
        });
    }
    http::Response {
        status: head.status,
        headers: head.headers,
        body: std::mem::take(&mut body),
    }
    .error_for_status()?;
    let Some(id) = id else {
        return Ok((None, new_session));
    };
    if !is_sse {
        let value: Value = serde_json::from_slice(&body).map_err(|e| CallError {
            code: ErrorCode::Unavailable,
            message: format!("the MCP server answered with JSON that does not parse: {e}"),
        })?;
        if answers(&value, id) {
            answer = Some(value);
        }
    }
    let answer = answer.ok_or_else(|| CallError {
        code: ErrorCode::Unavailable,
        message: "the MCP server answered without a response to the request".into(),
    })?;
    Ok((Some(answer), new_session))
}

/// The `initialize` request and the `initialized` notification.
fn handshake(id: &Value) -> (Value, Value) {
    let init = request(
        id,
        "initialize",
        json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "hearth-mcp", "version": env!("CARGO_PKG_VERSION") }
        }),
    );
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    (init, initialized)
}

/// Opens an HTTP session: `initialize`, then `notifications/initialized`.
fn open_session(url: &str, deadline: Deadline) -> Result<Option<String>, CallError> {
    let (init, initialized) = handshake(&next_id());
    let (answer, session) = post(url, &init, None, deadline)?;
    result_of(answer)?;
    post(url, &initialized, session.as_deref(), deadline)?;
    Ok(session)
}

/// The result of a JSON-RPC response, or its error as a typed error.
fn result_of(answer: Option<Value>) -> Result<Value, CallError> {
    let answer = answer.unwrap_or(Value::Null);
    if let Some(error) = answer.get("error") {
        let message = error["message"].as_str().unwrap_or("error").to_owned();
        let code = match error["code"].as_i64() {
            Some(-32602) => ErrorCode::InvalidInput,
            Some(-32601) => ErrorCode::NotFound,
            _ => ErrorCode::Failed,
        };
        return Err(CallError {
            code,
            message: format!("the MCP server: {message}"),
        });
    }
    Ok(answer.get("result").cloned().unwrap_or(Value::Null))
}

/// Calls `method` in this instance's session (stdio: the process's),
/// opening one (again) when needed.
fn rpc(method: &str, params: Value, deadline: Deadline) -> Result<Value, CallError> {
    let url = match Server::configured()? {
        Server::Stdio { argv } => return rpc_stdio(&argv, method, params),
        Server::Http { url } => url,
    };
    for attempt in 0..2 {
        let session = match STATE.with(|s| s.borrow().session.clone()) {
            Some(session) => session,
            None => {
                let session = open_session(&url, deadline)?;
                STATE.with(|s| s.borrow_mut().session = Some(session.clone()));
                session
            }
        };
        let message = request(&next_id(), method, params.clone());
        match post(&url, &message, session.as_deref(), deadline) {
            Ok((answer, _)) => return result_of(answer),
            // The server forgot the session: open another, once.
            Err(e) if e.code == ErrorCode::NotFound && attempt == 0 => {
                STATE.with(|s| s.borrow_mut().session = None);
            }
            Err(e) => return Err(e),
        }
    }
    Err(CallError {
        code: ErrorCode::Unavailable,
        message: "the MCP server keeps forgetting its session".into(),
    })
}

fn list(key: &str) -> Result<Vec<String>, CallError> {
    Ok(config::get_json::<Vec<String>>(key)?.unwrap_or_default())
}

/// Every tool the server offers (all pages), trimmed by config; kept by
/// the instance until the server says its tools changed.
fn tools(deadline: Deadline) -> Result<Vec<Tool>, CallError> {
    if let Some(tools) = STATE.with(|s| s.borrow().tools.clone()) {
        return Ok(tools);
    }
    let include = list("include")?;
    let exclude = list("exclude")?;
    let mut names = UniqueNames::default();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _page in 0..1000 {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let page = rpc("tools/list", params, deadline)?;
        for tool in page["tools"].as_array().into_iter().flatten() {
            let Some(name) = tool["name"].as_str() else {
                continue;
            };
            if (!include.is_empty() && !include.iter().any(|i| i == name))
                || exclude.iter().any(|e| e == name)
            {
                continue;
            }
            let base = operation_name(name);
            if base.is_empty() {
                continue;
            }
            let mut input_schema = tool["inputSchema"].clone();
            if input_schema.get("type") != Some(&json!("object")) {
                input_schema = json!({ "type": "object" });
            }
            out.push(Tool {
                op: names.take(&base),
                name: name.to_owned(),
                read_only: tool["annotations"]["readOnlyHint"] == json!(true),
                description: tool["description"]
                    .as_str()
                    .or(tool["title"].as_str())
                    .unwrap_or(name)
                    .to_owned(),
                input_schema,
                output_schema: tool.get("outputSchema").cloned(),
            });
        }
        match page["nextCursor"].as_str() {
            Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    STATE.with(|s| s.borrow_mut().tools = Some(out.clone()));
    Ok(out)
}

/// The output of a tool result without `structuredContent`.
fn content_wrapper() -> Value {
    json!({
        "type": "object",
        "properties": {
            "content": {
                "type": "array",
                "description": "The tool's content blocks (text, image, resource, …)",
                "items": { "type": "object" }
            }
        }
    })
}

/// The text of a result's content blocks.
fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

struct Mcp;

impl Plugin for Mcp {
    fn operations(_ops: &mut Operations) {}

    fn discover() -> Result<Vec<DynamicOp>, CallError> {
        Ok(tools(Deadline(None))?
            .into_iter()
            .map(|t| DynamicOp {
                name: t.op,
                kind: if t.read_only {
                    OpKind::Query
                } else {
                    OpKind::Mutation
                },
                description: t.description,
                input_schema: t.input_schema,
                output_schema: t.output_schema.unwrap_or_else(content_wrapper),
                scopes: Vec::new(),
                event_schema: None,
            })
            .collect())
    }

    fn call_dynamic(cx: &Context, op: &str, input: Value) -> Result<Value, CallError> {
        let deadline = Deadline::of(cx);
        let find = |tools: Vec<Tool>| tools.into_iter().find(|t| t.op == op);
        // The host routed `op` here, so the server offered it when the
        // host last listed; a warm instance's older list may lack it.
        let tool = match find(tools(deadline)?) {
            Some(tool) => tool,
            None => {
                STATE.with(|s| s.borrow_mut().tools = None);
                find(tools(deadline)?).ok_or_else(|| {
                    CallError::not_found(format!(
                        "the MCP server no longer offers a tool for `{op}`"
                    ))
                })?
            }
        };
        let result = rpc(
            "tools/call",
            json!({ "name": tool.name, "arguments": input }),
            deadline,
        )?;
        if result["isError"] == json!(true) {
            return Err(CallError::failed(format!(
                "tool `{}` failed: {}",
                tool.name,
                text_of(&result)
            )));
        }
        Ok(match result.get("structuredContent") {
            Some(structured) if !structured.is_null() => structured.clone(),
            _ => json!({ "content": result["content"] }),
        })
    }
}

hearth_sdk::export_plugin!(Mcp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_pings_are_answered_and_other_requests_refused() {
        let pong = incoming(&json!({"jsonrpc": "2.0", "id": 7, "method": "ping"})).unwrap();
        assert_eq!(pong["id"], 7);
        assert_eq!(pong["result"], json!({}));
        let refused =
            incoming(&json!({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage"}))
                .unwrap();
        assert_eq!(refused["error"]["code"], -32601);
        assert!(incoming(&json!({"jsonrpc": "2.0", "method": "notifications/progress"})).is_none());
    }

    #[test]
    fn responses_are_matched_by_id_and_cancels_name_the_request() {
        let id = json!("ab-3");
        assert!(answers(&json!({"id": "ab-3", "result": {}}), &id));
        assert!(answers(&json!({"id": "ab-3", "error": {"code": 1}}), &id));
        assert!(!answers(&json!({"id": "ab-4", "result": {}}), &id));
        assert!(!answers(&json!({"id": "ab-3", "method": "ping"}), &id));
        assert_eq!(cancel(&id, "gone")["params"]["requestId"], "ab-3");
    }

    #[test]
    fn the_wait_leaves_time_to_cancel() {
        assert_eq!(Deadline(None).wait(), None);
        let wait = Deadline(Some(Instant::now() + Duration::from_secs(10)))
            .wait()
            .unwrap();
        assert!(wait <= Duration::from_millis(9_500) && wait > Duration::from_secs(9));
        let short = Deadline(Some(Instant::now() + Duration::from_millis(100)))
            .wait()
            .unwrap();
        assert!(short <= Duration::from_millis(50));
    }

    #[test]
    fn json_rpc_errors_become_typed_errors() {
        let err =
            result_of(Some(json!({"error": {"code": -32602, "message": "bad a"}}))).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(err.message.contains("bad a"));
        assert_eq!(
            result_of(Some(json!({"result": {"x": 1}}))).unwrap()["x"],
            1
        );
    }
}
