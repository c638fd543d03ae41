//! The plugin's own configuration: `[plugins.<name>.config]` in the
//! operator's `stack.toml`. Always available; each instance of a component
//! sees its own table.
//!
//! Keys are top-level names or dotted paths into nested tables
//! (`server.url`); strings come as written, other values as JSON text, so
//! [`get_json`] reads any of them into a type.

use serde::de::DeserializeOwned;

use crate::CallError;
use crate::bindings::hearth::node::config;

/// The value at `key`, as text; a key the operator set to a secret gives
/// the secret (`locked` while the vault is locked, `not-found` when unset).
pub fn get(key: &str) -> Result<Option<String>, CallError> {
    config::get(key)
}

/// The value at `key` read as `T` (a string value is tried as JSON, then
/// as a JSON string); `invalid-input` naming the key when it does not fit.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, CallError> {
    let Some(text) = config::get(key)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .or_else(|_| serde_json::from_value(serde_json::Value::String(text.clone())))
        .map(Some)
        .map_err(|e| CallError::invalid_input(format!("config `{key}`: {e}")))
}

/// Every key (dotted for nested tables) with its value, in key order;
/// secrets are left out (read them with [`get`]).
pub fn all() -> Vec<(String, String)> {
    config::get_all()
}
