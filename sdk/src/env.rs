//! Call other operations by path, as this plugin.
//!
//! Works only for paths granted in `grants.env` of this plugin's entry in
//! `stack.toml`. Nested calls carry this call's request id as their parent
//! and inherit its deadline.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CallError;
use crate::bindings::hearth::node::env as wit_env;
pub use crate::bindings::hearth::node::types::{Response, Source};

/// A decoded reply: the output and the envelope it came in.
#[derive(Debug, Clone)]
pub struct Reply<O> {
    /// The operation's output.
    pub output: O,
    /// Id the host gave the nested call.
    pub request_id: String,
    /// Id of the call that made it (this plugin's current call).
    pub parent_request_id: Option<String>,
    /// Who answered.
    pub source: Source,
}

/// Calls `path` with `input` and decodes the output as `O`.
pub fn call<I: Serialize, O: DeserializeOwned>(
    path: &str,
    input: &I,
) -> Result<Reply<O>, CallError> {
    let input = serde_json::to_string(input)
        .map_err(|e| CallError::failed(format!("cannot encode input for {path}: {e}")))?;
    let response = wit_env::call(path, &input)?;
    let output = serde_json::from_str(&response.output)
        .map_err(|e| CallError::failed(format!("unexpected output from {path}: {e}")))?;
    Ok(Reply {
        output,
        request_id: response.request_id,
        parent_request_id: response.parent_request_id,
        source: response.source,
    })
}

/// Calls `path` with raw JSON text; returns the raw response.
pub fn call_json(path: &str, input: &str) -> Result<Response, CallError> {
    wit_env::call(path, input)
}
