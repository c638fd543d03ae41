//! `relay`: composition through `env`.
//!
//! `ping` calls `/node/echo/ping` and shows both request ids, so a caller
//! can see the nested call carried this call's id as its parent. `forward`
//! calls any path (only granted paths succeed). `cycle` calls itself until
//! the host's depth bound stops it. `gather` calls several operations,
//! on this node or on peers, and returns each answer or error.
//! `on-message` handles inbox messages: it replies to each sender.

use hearth_sdk::env;
use hearth_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PingInput {
    /// Message to send through echo.
    msg: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct EchoReply {
    msg: String,
}

#[derive(Serialize, JsonSchema)]
struct PingOutput {
    /// What echo answered.
    reply: String,
    /// This call's request id.
    request_id: String,
    /// The nested call's request id.
    nested_request_id: String,
    /// The nested call's parent id: equal to `request_id`.
    nested_parent_request_id: Option<String>,
}

fn ping(cx: &Context, input: PingInput) -> Result<PingOutput, CallError> {
    let reply: env::Reply<EchoReply> = env::call("/node/echo/ping", &EchoReply { msg: input.msg })?;
    Ok(PingOutput {
        reply: reply.output.msg,
        request_id: cx.request_id().to_owned(),
        nested_request_id: reply.request_id,
        nested_parent_request_id: reply.parent_request_id,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ForwardInput {
    /// Operation to call, e.g. `/node/echo/ping`.
    path: String,
    /// Its input.
    #[serde(default)]
    input: serde_json::Value,
}

fn forward(_cx: &Context, input: ForwardInput) -> Result<serde_json::Value, CallError> {
    let reply: env::Reply<serde_json::Value> = env::call(&input.path, &input.input)?;
    Ok(reply.output)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Serialize, Deserialize, JsonSchema)]
struct CycleOutput {
    depth: u32,
}

fn cycle(_cx: &Context, _input: Empty) -> Result<CycleOutput, CallError> {
    let reply: env::Reply<CycleOutput> = env::call("/node/relay/cycle", &serde_json::json!({}))?;
    Ok(reply.output)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GatherInput {
    /// The calls to make, in order.
    calls: Vec<ForwardInput>,
}

#[derive(Serialize, JsonSchema)]
struct Gathered {
    /// The path called.
    path: String,
    /// Its output, when it succeeded.
    output: Option<serde_json::Value>,
    /// Who answered (`{"remote": "worker-1"}` for another node).
    source: Option<serde_json::Value>,
    /// Its error, `code: message`, when it failed.
    error: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct GatherOutput {
    results: Vec<Gathered>,
}

/// Composition across nodes: one call per entry, each answer or error kept,
/// so a caller sees every node's part even when one fails.
fn gather(_cx: &Context, input: GatherInput) -> Result<GatherOutput, CallError> {
    let results = input
        .calls
        .into_iter()
        .map(
            |call| match env::call::<_, serde_json::Value>(&call.path, &call.input) {
                Ok(reply) => Gathered {
                    path: call.path,
                    output: Some(reply.output),
                    source: Some(match reply.source {
                        env::Source::Plugin(name) => serde_json::json!({ "plugin": name }),
                        env::Source::Host => serde_json::json!("host"),
                        env::Source::Remote(name) => serde_json::json!({ "remote": name }),
                    }),
                    error: None,
                },
                Err(err) => Gathered {
                    path: call.path,
                    output: None,
                    source: None,
                    error: Some(format!("{}: {}", err.code.as_str(), err.message)),
                },
            },
        )
        .collect();
    Ok(GatherOutput { results })
}

#[derive(Deserialize, JsonSchema)]
struct Sender {
    /// The sending node's key.
    key: String,
}

#[derive(Deserialize, JsonSchema)]
struct InboxMessage {
    /// This node's id for the message.
    id: String,
    /// Who sent it.
    from: Sender,
    /// The topic it came on, if any.
    #[serde(default)]
    topic: Option<String>,
    /// Its body (a string of its first bytes when `truncated`).
    body: serde_json::Value,
    /// Whether the body was cut to the node's handler limit.
    #[serde(default)]
    truncated: bool,
}

#[derive(Serialize, JsonSchema)]
struct Handled {
    /// The reply's id in this node's outbox.
    reply: String,
    /// What trying to send elsewhere gave (it must be refused).
    elsewhere: Option<String>,
}

/// The message handler: replies to the sender (the one thing its scope
/// allows besides posting to the topic) and, when the body asks it to,
/// tries to send to another node to show that is refused.
fn on_message(_cx: &Context, message: InboxMessage) -> Result<Handled, CallError> {
    // Never answer an answer: two relays would reply to each other forever.
    if message.body.get("re").is_some() {
        return Ok(Handled {
            reply: String::new(),
            elsewhere: None,
        });
    }
    let elsewhere = message
        .body
        .get("try_send_to")
        .and_then(|v| v.as_str())
        .map(|to| {
            match env::call::<_, serde_json::Value>(
                "/node/msg/send",
                &serde_json::json!({ "to": to, "body": "sneaky" }),
            ) {
                Ok(_) => "sent".to_owned(),
                Err(err) => format!("{}: {}", err.code.as_str(), err.message),
            }
        });
    let reply: env::Reply<serde_json::Value> = env::call(
        "/node/msg/send",
        &serde_json::json!({
            "to": message.from.key,
            "client_message_id": format!("re-{}", message.id),
            "body": {
                "re": message.body,
                "topic": message.topic,
                "truncated": message.truncated,
                "elsewhere": elsewhere,
            },
        }),
    )?;
    Ok(Handled {
        reply: reply
            .output
            .get("client_message_id")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        elsewhere,
    })
}

struct Relay;

impl Plugin for Relay {
    fn operations(ops: &mut Operations) {
        ops.query(
            "ping",
            "Ping echo through env and show both request ids.",
            ping,
        )
        .scopes(&["relay:call"]);
        ops.mutation(
            "forward",
            "Call any granted operation through env.",
            forward,
        )
        .scopes(&["relay:call"]);
        ops.mutation(
            "gather",
            "Call several granted operations, on this node or peers, and return every answer.",
            gather,
        )
        .scopes(&["relay:call"]);
        ops.query(
            "cycle",
            "Call itself until the depth bound stops it.",
            cycle,
        )
        .scopes(&["relay:call"]);
        ops.mutation(
            "on-message",
            "Message handler: replies to the sender of each message it is granted.",
            on_message,
        )
        .scopes(&["relay:call"]);
    }
}

hearth_sdk::export_plugin!(Relay);
