//! `relay`: composition through `env`.
//!
//! `ping` calls `/node/echo/ping` and shows both request ids, so a caller
//! can see the nested call carried this call's id as its parent. `forward`
//! calls any path (only granted paths succeed). `cycle` calls itself until
//! the host's depth bound stops it. `gather` calls several operations,
//! on this node or on peers, and returns each answer or error.

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

struct Relay;

impl Plugin for Relay {
    fn operations(ops: &mut Operations) {
        ops.query(
            "ping",
            "Ping echo through env and show both request ids.",
            ping,
        );
        ops.mutation(
            "forward",
            "Call any granted operation through env.",
            forward,
        );
        ops.mutation(
            "gather",
            "Call several granted operations, on this node or peers, and return every answer.",
            gather,
        );
        ops.query(
            "cycle",
            "Call itself until the depth bound stops it.",
            cycle,
        );
    }
}

hearth_sdk::export_plugin!(Relay);
