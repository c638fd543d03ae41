//! This plugin's own key-value namespace, stored by the host in SQLite.
//!
//! Works only with `grants.kv = true`. Keys are private to the plugin: two
//! plugins never see each other's keys. A call's writes take effect only
//! if the call returns `Ok`; the call reads its own writes meanwhile.

use crate::CallError;
use crate::bindings::hearth::node::kv as wit_kv;

/// The value under `key`, if any.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, CallError> {
    wit_kv::get(key)
}

/// Stores `value` under `key`.
pub fn set(key: &str, value: &[u8]) -> Result<(), CallError> {
    wit_kv::set(key, value)
}

/// Removes `key`; true when it existed.
pub fn delete(key: &str) -> Result<bool, CallError> {
    wit_kv::delete(key)
}

/// Up to `limit` keys starting with `prefix`, in order.
pub fn list_keys(prefix: &str, limit: u32) -> Result<Vec<String>, CallError> {
    wit_kv::list_keys(prefix, limit)
}

/// The value under `key` read as JSON into `T`; `invalid-input` naming
/// the key when the stored bytes are not such a value.
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, CallError> {
    match wit_kv::get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CallError::invalid_input(format!("kv `{key}` is not the expected JSON: {e}"))
        }),
    }
}

/// Stores `value` under `key` as JSON.
pub fn set_json<T: serde::Serialize + ?Sized>(key: &str, value: &T) -> Result<(), CallError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| CallError::invalid_input(format!("cannot encode kv `{key}`: {e}")))?;
    wit_kv::set(key, &bytes)
}
