//! The `config` capability: the plugin's own `[plugins.<name>.config]`
//! table, as the operator wrote it for this instance.
//!
//! No grant for plain values: a plugin always reads its own
//! configuration, and only its own — the host hands each call the calling instance's table, so two
//! instances of one component each see theirs. It is ours rather than
//! `wasi:config/store` because values will come from the vault's secrets
//! by grant (a typed `denied`, not a string error), and one versioned
//! package keeps the world in one place; a `wasi:config` adapter over it
//! is a small addition if a component needs one.
//!
//! A value written `{ secret = "github" }` is the secret of that name
//! ([`SecretStore`]), which `grants.secrets` must list (checked when the
//! stack is resolved); it is opened with the vault when the plugin asks.

mod secrets;

use wasmtime::component::{HasData, Linker};

pub use secrets::SecretStore;

use crate::runtime::CallState;
use crate::runtime::bindings::{self, hearth::node::config, wit};

/// `config` as one call's plugin sees it.
pub struct Config<'a>(&'a mut CallState);

struct ConfigData;

impl HasData for ConfigData {
    type Data<'a> = Config<'a>;
}

/// Links `hearth:node/config`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    config::add_to_linker::<CallState, ConfigData>(linker, |state| Config(state))
}

impl config::Host for Config<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, wit::CallError>> {
        let caller = self.0.caller();
        let Some(secret) = caller.secret_refs.get(&key).cloned() else {
            return bindings::to_wit(Ok(caller.config.get(&key).cloned()));
        };
        let value = match self.0.resource::<SecretStore>("secrets") {
            Ok(store) => store.get(&secret).await.map(Some),
            Err(e) => Err(e),
        };
        bindings::to_wit(value)
    }

    async fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .0
            .caller()
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
