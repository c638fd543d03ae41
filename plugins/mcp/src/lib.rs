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
//! text; JSON-RPC errors map to typed errors. A session the server forgot
//! (404) is opened again once. A stdio server runs as a host process
//! (`grants.process`), kept across calls: a new process (its generation
//! changed) gets a new session; responses are matched by id, and lines of
//! an abandoned call are skipped.

use std::cell::RefCell;

use hearth_sdk::names::{UniqueNames, operation_name};
use hearth_sdk::prelude::*;
use hearth_sdk::{DynamicOp, OpKind};
use serde_json::{Value, json};

/// The protocol revision this client speaks.
const PROTOCOL_VERSION: &str = "2025-06-18";

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
    session: Option<Option<String>>,
    /// For a stdio server: the process generation this instance opened
    /// its session with.
    stdio_generation: Option<u64>,
    tools: Option<Vec<Tool>>,
    next_id: u64,
    /// Random per instance, so ids never repeat across instances sharing
    /// one stdio process.
    salt: u64,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn url() -> Result<String, CallError> {
    config::get("url")?.ok_or_else(|| {
        CallError::invalid_input(
            "config `url` is not set: give the server's Streamable HTTP endpoint, such as \"http://127.0.0.1:3001/mcp\", or `command`, a stdio server's argument list",
        )
    })
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

/// The stdio server's argument list, when `command` is configured.
fn command() -> Result<Option<Vec<String>>, CallError> {
    config::get_json::<Vec<String>>("command")
}

/// Writes one message to the stdio server; reads until the response to
/// `id` (skipping notifications, requests and answers of abandoned calls).
fn exchange_stdio(
    argv: &[String],
    message: &Value,
    id: Option<&Value>,
) -> Result<Option<Value>, CallError> {
    hearth_sdk::process::write_line(argv, &message.to_string())?;
    let Some(id) = id else {
        return Ok(None);
    };
    loop {
        // The call's deadline ends this loop if the server never answers.
        let Some(line) = hearth_sdk::process::read_line(argv, 1000)? else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if &value["id"] == id && (value.get("result").is_some() || value.get("error").is_some()) {
            return Ok(Some(value));
        }
    }
}

/// Posts one JSON-RPC message; returns the response to `id` (None for a
/// notification) and the session id the server gave.
fn post(
    message: &Value,
    session: Option<&str>,
    id: Option<&Value>,
) -> Result<(Option<Value>, Option<String>), CallError> {
    let mut request = http::post(url()?)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL_VERSION)
        .json(message)?;
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    if let Some(token) = config::get("bearer_token")? {
        request = request.bearer(&token);
    }
    let response = request.send()?;
    if response.status == 404 && session.is_some() {
        return Err(CallError {
            code: ErrorCode::NotFound,
            message: "session expired".into(),
        });
    }
    let response = response.error_for_status()?;
    let session = response.header("mcp-session-id").map(str::to_owned);
    let Some(id) = id else {
        return Ok((None, session));
    };
    let is_sse = response
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let messages: Vec<Value> = if is_sse {
        sse_messages(&response.text())
    } else {
        vec![response.json()?]
    };
    let answer = messages
        .into_iter()
        .find(|m| &m["id"] == id && (m.get("result").is_some() || m.get("error").is_some()))
        .ok_or_else(|| CallError {
            code: ErrorCode::Unavailable,
            message: "the MCP server answered without a response to the request".into(),
        })?;
    Ok((Some(answer), session))
}

/// The JSON messages of a `text/event-stream` body.
fn sse_messages(body: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut data = String::new();
    for line in body.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let Ok(value) = serde_json::from_str(&data) {
                out.push(value);
            }
            data.clear();
        } else if let Some(rest) = line.strip_prefix("data:") {
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    out
}

/// The `initialize` request and the `initialized` notification.
fn handshake(id: &Value) -> (Value, Value) {
    let init = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "hearth-mcp", "version": env!("CARGO_PKG_VERSION") }
        }
    });
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    (init, initialized)
}

/// Opens an HTTP session: `initialize`, then `notifications/initialized`.
fn open_session() -> Result<Option<String>, CallError> {
    let id = next_id();
    let (init, initialized) = handshake(&id);
    let (answer, session) = post(&init, None, Some(&id))?;
    result_of(answer)?;
    post(&initialized, session.as_deref(), None)?;
    Ok(session)
}

/// Calls `method` on a stdio server, opening a session with each new
/// process.
fn rpc_stdio(argv: &[String], method: &str, params: Value) -> Result<Value, CallError> {
    let generation = hearth_sdk::process::generation(argv)?;
    if STATE.with(|s| s.borrow().stdio_generation) != Some(generation) {
        let id = next_id();
        let (init, initialized) = handshake(&id);
        result_of(exchange_stdio(argv, &init, Some(&id))?)?;
        exchange_stdio(argv, &initialized, None)?;
        STATE.with(|s| s.borrow_mut().stdio_generation = Some(generation));
    }
    let id = next_id();
    let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    result_of(exchange_stdio(argv, &message, Some(&id))?)
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

/// Calls `method` in this instance's session, opening one (again) when
/// needed.
fn rpc(method: &str, params: Value) -> Result<Value, CallError> {
    if let Some(argv) = command()? {
        return rpc_stdio(&argv, method, params);
    }
    for attempt in 0..2 {
        let session = match STATE.with(|s| s.borrow().session.clone()) {
            Some(session) => session,
            None => {
                let session = open_session()?;
                STATE.with(|s| s.borrow_mut().session = Some(session.clone()));
                session
            }
        };
        let id = next_id();
        let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        match post(&message, session.as_deref(), Some(&id)) {
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

/// Every tool the server offers (all pages), trimmed by config.
fn tools() -> Result<Vec<Tool>, CallError> {
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
        let page = rpc("tools/list", params)?;
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
        Ok(tools()?
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

    fn call_dynamic(_cx: &Context, op: &str, input: Value) -> Result<Value, CallError> {
        let tool = tools()?
            .into_iter()
            .find(|t| t.op == op)
            .ok_or_else(|| CallError::not_found(format!("this server has no tool for `{op}`")))?;
        let result = rpc(
            "tools/call",
            json!({ "name": tool.name, "arguments": input }),
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
    fn event_stream_bodies_yield_their_messages() {
        let body = "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n: keep-alive\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n";
        let messages = sse_messages(body);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["id"], 3);
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
