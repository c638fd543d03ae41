//! The `kv` capability: a key-value namespace per plugin, in the node's
//! SQLite database.
//!
//! Grant: `grants.kv = true`. Manifest request: `capabilities.kv = true`.
//! The plugin name comes from the host, never the plugin, so a plugin
//! reaches only its own keys.

mod store;

use std::sync::Arc;

use hearth_registry::{CallError, ErrorCode};
use wasmtime::component::{HasData, Linker};

pub use store::{KvOpenError, KvStore, MAX_KEY_BYTES, MAX_LIST, MAX_VALUE_BYTES};

use crate::runtime::CallState;
use crate::runtime::bindings::{self, hearth::node::kv, wit};

/// `kv` as one call's plugin sees it.
pub struct Kv<'a>(&'a mut CallState);

struct KvData;

impl HasData for KvData {
    type Data<'a> = Kv<'a>;
}

/// Links `hearth:node/kv`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    kv::add_to_linker::<CallState, KvData>(linker, |state| Kv(state))
}

impl Kv<'_> {
    /// The store and the plugin's namespace, once the grant is checked.
    fn granted(&self) -> Result<(Arc<KvStore>, Arc<str>), CallError> {
        let caller = self.0.caller();
        if !caller.grants.kv {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` has no kv grant; set `grants.kv = true` in [plugins.{}] of stack.toml",
                    caller.plugin, caller.plugin
                ),
            ));
        }
        let plugin = caller.plugin.clone();
        Ok((self.0.resource::<KvStore>("kv")?, plugin))
    }
}

impl kv::Host for Kv<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::CallError>> {
        let result = match self.granted() {
            Ok((store, plugin)) => store.get(&plugin, key).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        let result = match self.granted() {
            Ok((store, plugin)) => store.set(&plugin, key, value).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, wit::CallError>> {
        let result = match self.granted() {
            Ok((store, plugin)) => store.delete(&plugin, key).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, wit::CallError>> {
        let result = match self.granted() {
            Ok((store, plugin)) => store.list(&plugin, prefix, limit).await,
            Err(e) => Err(e),
        };
        bindings::to_wit(result)
    }
}
