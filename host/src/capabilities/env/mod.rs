//! The `env` capability: a plugin calls operations — on this node or, by
//! name, on a peer — through the OperationEnv.
//!
//! Grant: `grants.env`, a list of path patterns (`/node/echo/*`). A pattern
//! whose node segment is `*` covers this node's operations only: a peer
//! must be named (`/worker-1/echo/*`). The check lives here
//! ([`check_grant`]); the pipeline runs it for every call whose origin is a
//! plugin, so a call cannot reach an operation by any other way.

use std::sync::{Arc, Weak};

use hearth_registry::{CallError, ErrorCode, OperationPath};
use wasmtime::component::{HasData, Linker};

use crate::call::{CallRequest, DynOperationEnv, PluginCaller};
use crate::runtime::CallState;
use crate::runtime::bindings::{self, hearth::node::env, wit};

/// The pipeline a plugin's nested calls go to (the node implements it).
/// Held weakly: a plugin's call must not keep a stopped node alive.
pub struct EnvHandle(pub Weak<dyn DynOperationEnv>);

/// `env` as one call's plugin sees it.
pub struct Env<'a>(&'a mut CallState);

struct EnvData;

impl HasData for EnvData {
    type Data<'a> = Env<'a>;
}

/// Links `hearth:node/env`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    env::add_to_linker::<CallState, EnvData>(linker, |state| Env(state))
}

impl env::Host for Env<'_> {
    async fn call(
        &mut self,
        path: String,
        input: String,
    ) -> wasmtime::Result<Result<wit::Response, wit::CallError>> {
        let pipeline = match self.0.resource::<EnvHandle>("env") {
            Ok(handle) => handle.0.upgrade(),
            Err(e) => return bindings::to_wit(Err(e)),
        };
        let Some(pipeline) = pipeline else {
            return bindings::to_wit(Err(CallError::new(
                ErrorCode::Unavailable,
                "the node is shutting down",
            )));
        };
        let request = CallRequest::from_plugin(self.0.caller().clone(), path, input);
        let result = pipeline.call_boxed(request).await;
        Ok(result
            .map(bindings::response_to_wit)
            .map_err(bindings::call_error_to_wit))
    }
}

/// Whether `caller` may call `path` (written with the peer's name when it
/// is on a peer): `denied` naming the grant to add otherwise.
pub fn check_grant(
    caller: &PluginCaller,
    path: &OperationPath,
    on_peer: bool,
) -> Result<(), CallError> {
    let granted = if on_peer {
        // `*` never stands for a node: a peer must be named.
        caller.grants.env.iter().any(|p| p.matches_named_node(path))
    } else {
        caller.grants.allows_env(path)
    };
    if granted {
        return Ok(());
    }
    Err(CallError::new(
        ErrorCode::Denied,
        format!(
            "plugin `{}` is not granted calls to {path}; add \"{path}\" to `grants.env` of [plugins.{}] in stack.toml",
            caller.plugin, caller.plugin
        ),
    ))
}

/// The handle the node puts in its resources.
pub fn handle(pipeline: Weak<dyn DynOperationEnv>) -> Arc<EnvHandle> {
    Arc::new(EnvHandle(pipeline))
}
