//! Containers on the node's Docker engine, within the policy the operator
//! granted this plugin (`grants.docker` in `stack.toml`). A plugin sees and
//! manages only the containers it created.

use crate::CallError;
use crate::bindings::hearth::node::docker as wit_docker;
pub use crate::bindings::hearth::node::docker::{CreateRequest, PortMapping};

/// Creates and starts a container; returns its id.
pub fn create(request: &CreateRequest) -> Result<String, CallError> {
    wit_docker::create(request)
}

/// The engine's inspect document.
pub fn inspect(container: &str) -> Result<serde_json::Value, CallError> {
    parse(wit_docker::inspect(container)?)
}

/// The engine's container list (running only unless `all`).
pub fn list(all: bool) -> Result<serde_json::Value, CallError> {
    parse(wit_docker::list_containers(all)?)
}

/// Stops a container, killing it after `timeout_secs`.
pub fn stop(container: &str, timeout_secs: u32) -> Result<(), CallError> {
    wit_docker::stop(container, timeout_secs)
}

/// Removes a container.
pub fn remove(container: &str, force: bool) -> Result<(), CallError> {
    wit_docker::remove(container, force)
}

/// The last `tail` lines of a container's output.
pub fn logs(container: &str, tail: u32) -> Result<Vec<String>, CallError> {
    wit_docker::logs(container, tail)
}

/// The next lifecycle event of this plugin's containers (as the engine
/// reports it: `action`, `id`, `name`, `image`, `time`), waiting up to
/// `timeout_ms`; `None` when none came (or the subscriber of the current
/// call went away). The first call starts the watch; it ends with the call.
pub fn next_event(timeout_ms: u32) -> Result<Option<serde_json::Value>, CallError> {
    wit_docker::next_event(timeout_ms)?.map(parse).transpose()
}

fn parse(text: String) -> Result<serde_json::Value, CallError> {
    serde_json::from_str(&text)
        .map_err(|e| CallError::failed(format!("unreadable engine answer: {e}")))
}
