//! This plugin's own key-value namespace, stored by the host in SQLite.
//!
//! Works only with `grants.kv = true`. Keys are private to the plugin: two
//! plugins never see each other's keys.

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
