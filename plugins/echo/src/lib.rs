//! `echo`: the tutorial plugin.
//!
//! Read this file top to bottom to learn how a Hearth plugin is written:
//!
//! 1. Each operation is one plain function taking a [`Context`] and a typed
//!    input, returning a typed output or a [`CallError`].
//! 2. Input and output types derive `Deserialize`/`Serialize` and
//!    `JsonSchema`; the SDK turns them into the JSON Schemas `host ops`
//!    shows and the host validates input against before calling you.
//! 3. [`Plugin::operations`] registers each function in one line.
//! 4. [`hearth_sdk::export_plugin!`] exports the plugin as a component.
//!
//! Host capabilities (`kv` here) work only when `stack.toml` grants them.

use hearth_sdk::prelude::*;

/// Input of `ping`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PingInput {
    /// The message to send back.
    msg: String,
}

/// Output of `ping`.
#[derive(Serialize, JsonSchema)]
struct PingOutput {
    /// The message, unchanged.
    msg: String,
}

/// Replies with the message it was sent.
fn ping(_cx: &Context, input: PingInput) -> Result<PingOutput, CallError> {
    Ok(PingOutput { msg: input.msg })
}

/// Input of `context`: nothing.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// What a handler knows about its call.
#[derive(Serialize, JsonSchema)]
struct ContextOutput {
    request_id: String,
    parent_request_id: Option<String>,
    identity: String,
    depth: u32,
    nested: bool,
    deadline_ms: u64,
}

/// Shows the call context the host handed this call.
fn context(cx: &Context, _input: Empty) -> Result<ContextOutput, CallError> {
    Ok(ContextOutput {
        request_id: cx.request_id().to_owned(),
        parent_request_id: cx.parent_request_id().map(str::to_owned),
        identity: cx.identity().id.clone(),
        depth: cx.depth(),
        nested: cx.is_nested(),
        deadline_ms: cx.deadline_ms(),
    })
}

/// Input of `put`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PutInput {
    /// Key, 1 to 256 bytes.
    #[schemars(length(min = 1, max = 256))]
    key: String,
    /// Value to store as UTF-8 text.
    value: String,
}

/// Output of `put`.
#[derive(Serialize, JsonSchema)]
struct PutOutput {
    /// True when the key already held a value that was replaced.
    replaced: bool,
}

/// Stores a value under a key in this plugin's kv namespace.
fn put(_cx: &Context, input: PutInput) -> Result<PutOutput, CallError> {
    let replaced = kv::get(&input.key)?.is_some();
    kv::set(&input.key, input.value.as_bytes())?;
    Ok(PutOutput { replaced })
}

/// Input of `get`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetInput {
    /// Key to read.
    #[schemars(length(min = 1, max = 256))]
    key: String,
}

/// Output of `get`.
#[derive(Serialize, JsonSchema)]
struct GetOutput {
    /// The stored value, or null when the key is unset.
    value: Option<String>,
}

/// Reads the value stored under a key.
fn get(_cx: &Context, input: GetInput) -> Result<GetOutput, CallError> {
    let value = kv::get(&input.key)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    Ok(GetOutput { value })
}

struct Echo;

impl Plugin for Echo {
    fn operations(ops: &mut Operations) {
        ops.query("ping", "Reply with the message it was sent.", ping)
            .scopes(&["echo:read"]);
        ops.query(
            "context",
            "Show the call context the host passed in.",
            context,
        )
        .scopes(&["echo:read"]);
        ops.mutation("put", "Store a text value under a key.", put)
            .scopes(&["echo:write"]);
        ops.query("get", "Read the value stored under a key.", get)
            .scopes(&["echo:read"]);
    }
}

hearth_sdk::export_plugin!(Echo);
