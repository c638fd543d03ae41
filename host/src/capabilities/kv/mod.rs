//! The `kv` capability: a key-value namespace per plugin, in the node's
//! SQLite database.
//!
//! Grant: `grants.kv = true`. Manifest request: `capabilities.kv = true`.
//! The plugin name comes from the host, never the plugin, so a plugin
//! reaches only its own keys.
//!
//! A call's writes are held back ([`Staged`]) and applied in one
//! transaction when the call returns successfully; a call that fails, traps
//! or runs out of time changes nothing. The call reads its own writes.

mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hearth_registry::{CallError, ErrorCode};
use wasmtime::component::{HasData, Linker};

pub use store::{KvOpenError, KvStore, MAX_KEY_BYTES, MAX_LIST, MAX_VALUE_BYTES};

use crate::runtime::bindings::{self, hearth::node::kv, wit};
use crate::runtime::{CallState, Staged};

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

    /// This call's writes, held back until it succeeds.
    fn writes(
        &mut self,
        store: &Arc<KvStore>,
        plugin: &Arc<str>,
    ) -> Result<&mut Writes, CallError> {
        let (store, plugin) = (store.clone(), plugin.clone());
        self.0
            .staged(|| Writes {
                store,
                plugin,
                pending: BTreeMap::new(),
                bytes: 0,
            })
            .ok_or_else(|| CallError::new(ErrorCode::Failed, "kv: this call's writes are lost"))
    }

    async fn get_(&mut self, key: String) -> Result<Option<Vec<u8>>, CallError> {
        let (store, plugin) = self.granted()?;
        if let Some(staged) = self.writes(&store, &plugin)?.pending.get(&key) {
            return Ok(staged.clone());
        }
        store.get(&plugin, key).await
    }

    async fn set_(&mut self, key: String, value: Vec<u8>) -> Result<(), CallError> {
        let (store, plugin) = self.granted()?;
        store::check_write(&key, &value)?;
        self.writes(&store, &plugin)?.stage(key, Some(value))
    }

    async fn delete_(&mut self, key: String) -> Result<bool, CallError> {
        let (store, plugin) = self.granted()?;
        store::check_key(&key)?;
        let existed = match self.writes(&store, &plugin)?.pending.get(&key) {
            Some(staged) => staged.is_some(),
            None => store.get(&plugin, key.clone()).await?.is_some(),
        };
        self.writes(&store, &plugin)?.stage(key, None)?;
        Ok(existed)
    }

    async fn list_(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, CallError> {
        let (store, plugin) = self.granted()?;
        let limit = limit.min(MAX_LIST) as usize;
        let writes = self.writes(&store, &plugin)?;
        let staged: Vec<(String, bool)> = writes
            .pending
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.is_some()))
            .collect();
        // Enough stored keys that the staged deletes cannot starve the page.
        let fetch = (limit + staged.len()).min(u32::MAX as usize) as u32;
        let mut keys: std::collections::BTreeSet<String> = store
            .list_unbounded(&plugin, prefix, fetch)
            .await?
            .into_iter()
            .collect();
        for (key, present) in staged {
            if present {
                keys.insert(key);
            } else {
                keys.remove(&key);
            }
        }
        Ok(keys.into_iter().take(limit).collect())
    }
}

/// Most bytes of values one call may hold back.
const MAX_STAGED_BYTES: usize = 64 << 20;

/// One call's kv writes: applied in one transaction when the call returns
/// successfully, dropped when it fails, traps or runs out of time.
struct Writes {
    store: Arc<KvStore>,
    plugin: Arc<str>,
    /// Key → new value, or `None` for a delete.
    pending: BTreeMap<String, Option<Vec<u8>>>,
    bytes: usize,
}

impl Writes {
    fn stage(&mut self, key: String, value: Option<Vec<u8>>) -> Result<(), CallError> {
        let size = value.as_ref().map_or(0, Vec::len) + key.len();
        // A key written again replaces its staged value: count it once.
        let replaced = self
            .pending
            .get(&key)
            .map_or(0, |old| old.as_ref().map_or(0, Vec::len) + key.len());
        let bytes = self.bytes - replaced;
        if bytes + size > MAX_STAGED_BYTES {
            return Err(CallError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "one call may write at most {} MiB to kv; split the work over several calls",
                    MAX_STAGED_BYTES >> 20
                ),
            ));
        }
        self.bytes = bytes + size;
        self.pending.insert(key, value);
        Ok(())
    }
}

impl Staged for Writes {
    fn commit(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), CallError>> + Send>> {
        Box::pin(async move {
            if self.pending.is_empty() {
                return Ok(());
            }
            self.store
                .apply(&self.plugin, self.pending.into_iter().collect())
                .await
        })
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl kv::Host for Kv<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::CallError>> {
        bindings::to_wit(self.get_(key).await)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        bindings::to_wit(self.set_(key, value).await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, wit::CallError>> {
        bindings::to_wit(self.delete_(key).await)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, wit::CallError>> {
        bindings::to_wit(self.list_(prefix, limit).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes() -> (tempfile::TempDir, Writes) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(KvStore::open(&dir.path().join("kv.db")).unwrap());
        let writes = Writes {
            store,
            plugin: Arc::from("p"),
            pending: BTreeMap::new(),
            bytes: 0,
        };
        (dir, writes)
    }

    #[test]
    fn one_call_holds_back_at_most_64_mib() {
        let (_dir, mut writes) = writes();
        let mib = vec![7u8; 1 << 20];
        for i in 0..63 {
            writes.stage(format!("k{i}"), Some(mib.clone())).unwrap();
        }
        let err = writes.stage("k63".into(), Some(mib.clone())).unwrap_err();
        assert_eq!(err.code, ErrorCode::ResourceExhausted);
        assert!(err.message.contains("at most 64 MiB"), "{}", err.message);
        // The refused write is not held back.
        assert!(!writes.pending.contains_key("k63"));
        assert_eq!(writes.pending.len(), 63);
    }

    #[test]
    fn writing_one_key_again_counts_it_once() {
        let (_dir, mut writes) = writes();
        let mib = vec![7u8; 1 << 20];
        for _ in 0..200 {
            writes.stage("same".into(), Some(mib.clone())).unwrap();
        }
        writes.stage("same".into(), None).unwrap();
        assert_eq!(writes.bytes, "same".len());
    }
}
