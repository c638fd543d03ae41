//! Per-call store state and the host side of the plugin's imports.
//!
//! Every import checks the calling plugin's grants first: a capability the
//! operator did not grant fails with `denied` naming the line to add to
//! `stack.toml`. The work itself (routing nested calls, storing kv) is
//! delegated to [`HostServices`], which the node implements.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hearth_registry::{CallError, ErrorCode, GrantSet, ResponseEnvelope};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, hearth::node as imports, wit};
use super::context::CallContext;
use super::limits::{CallLimiter, LimitHit};
use super::stderr::StderrTail;

/// A boxed, sendable future, as the services return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Longest log line a plugin may emit; the rest is cut.
const MAX_LOG_LINE: usize = 4096;
/// Bytes of a plugin's stderr kept per call, for panic messages.
const STDERR_CAPACITY: usize = 16 * 1024;

/// The plugin making an import call, and the call it is serving.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The plugin's name.
    pub plugin: Arc<str>,
    /// What it was granted.
    pub grants: Arc<GrantSet>,
    /// The call it is serving.
    pub ctx: CallContext,
}

/// What the node provides to plugins; the runtime only adds grant checks.
pub trait HostServices: Send + Sync + 'static {
    /// Makes a nested call for `caller` (grants already checked).
    fn call(
        &self,
        caller: Caller,
        path: String,
        input: String,
    ) -> BoxFuture<Result<ResponseEnvelope, CallError>>;
    /// Reads `key` in `plugin`'s namespace.
    fn kv_get(
        &self,
        plugin: Arc<str>,
        key: String,
    ) -> BoxFuture<Result<Option<Vec<u8>>, CallError>>;
    /// Writes `key` in `plugin`'s namespace.
    fn kv_set(
        &self,
        plugin: Arc<str>,
        key: String,
        value: Vec<u8>,
    ) -> BoxFuture<Result<(), CallError>>;
    /// Deletes `key` in `plugin`'s namespace.
    fn kv_delete(&self, plugin: Arc<str>, key: String) -> BoxFuture<Result<bool, CallError>>;
    /// The node's vault.
    fn vault(&self) -> Arc<crate::vault::Vault>;
    /// The node's Docker engine.
    fn docker(&self) -> Arc<crate::docker::DockerEngine>;
    /// Lists keys with `prefix` in `plugin`'s namespace.
    fn kv_list(
        &self,
        plugin: Arc<str>,
        prefix: String,
        limit: u32,
    ) -> BoxFuture<Result<Vec<String>, CallError>>;
}

/// The data of one call's store.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: StderrTail,
    limiter: CallLimiter,
    caller: Caller,
    /// `None` while a plugin lists its specs at load: it may not call out.
    services: Option<Arc<dyn HostServices>>,
}

impl CallState {
    pub(super) fn new(
        caller: Caller,
        services: Option<Arc<dyn HostServices>>,
        limiter: CallLimiter,
    ) -> Self {
        let stderr = StderrTail::new(STDERR_CAPACITY);
        // No environment, arguments, files or sockets: WASI here is only
        // what Rust's std needs to start (clocks, random, stderr).
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limiter,
            caller,
            services,
        }
    }

    /// Prepares a warm instance's state for its next call.
    pub(super) fn reset(&mut self, caller: Caller, services: Arc<dyn HostServices>) {
        self.caller = caller;
        self.services = Some(services);
        self.limiter.hit = None;
        self.stderr.clear();
    }

    pub(super) fn limiter(&mut self) -> &mut CallLimiter {
        &mut self.limiter
    }

    /// The limit the current call ran into, if any.
    pub(super) fn limit_hit(&self) -> Option<&LimitHit> {
        self.limiter.hit.as_ref()
    }

    /// The last non-empty line the plugin wrote to stderr (a panic message).
    pub(super) fn last_stderr_line(&self) -> Option<String> {
        self.stderr.last_line()
    }

    fn services(&self, what: &str) -> Result<Arc<dyn HostServices>, CallError> {
        self.services.clone().ok_or_else(|| {
            CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` may not use {what} while listing its operations",
                    self.caller.plugin
                ),
            )
        })
    }

    fn check_kv(&self) -> Result<Arc<dyn HostServices>, CallError> {
        if !self.caller.grants.kv {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` has no kv grant; {}",
                    self.caller.plugin,
                    GrantSet::kv_grant_hint(&self.caller.plugin)
                ),
            ));
        }
        self.services("kv")
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Adds the `hearth:node` imports to `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    bindings::Plugin::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)
}

impl wit::Host for CallState {}

impl imports::env::Host for CallState {
    async fn call(
        &mut self,
        path: String,
        input: String,
    ) -> wasmtime::Result<Result<wit::Response, wit::CallError>> {
        let services = match self.services("env") {
            Ok(s) => s,
            Err(e) => return Ok(Err(bindings::call_error_to_wit(e))),
        };
        let result = services.call(self.caller.clone(), path, input).await;
        Ok(result
            .map(bindings::response_to_wit)
            .map_err(bindings::call_error_to_wit))
    }
}

impl imports::kv::Host for CallState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::CallError>> {
        let result = match self.check_kv() {
            Ok(s) => s.kv_get(self.caller.plugin.clone(), key).await,
            Err(e) => Err(e),
        };
        Ok(result.map_err(bindings::call_error_to_wit))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        let result = match self.check_kv() {
            Ok(s) => s.kv_set(self.caller.plugin.clone(), key, value).await,
            Err(e) => Err(e),
        };
        Ok(result.map_err(bindings::call_error_to_wit))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, wit::CallError>> {
        let result = match self.check_kv() {
            Ok(s) => s.kv_delete(self.caller.plugin.clone(), key).await,
            Err(e) => Err(e),
        };
        Ok(result.map_err(bindings::call_error_to_wit))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, wit::CallError>> {
        let result = match self.check_kv() {
            Ok(s) => s.kv_list(self.caller.plugin.clone(), prefix, limit).await,
            Err(e) => Err(e),
        };
        Ok(result.map_err(bindings::call_error_to_wit))
    }
}

impl CallState {
    /// Parses `path`, checks it is under a granted prefix, and returns the
    /// vault.
    fn check_vault(
        &self,
        path: &str,
    ) -> Result<(Arc<crate::vault::Vault>, crate::vault::DerivationPath), CallError> {
        use crate::vault::DerivationPath;
        let parsed = DerivationPath::parse(path)
            .map_err(|e| CallError::new(ErrorCode::InvalidInput, e.to_string()))?;
        // The node identity's branch signs the mesh's TLS handshakes: a
        // plugin holding it could log in to every peer as this node. No
        // grant reaches it, however broad.
        let reserved = DerivationPath::parse(crate::vault::IDENTITY_BRANCH)
            .map_err(|e| CallError::new(ErrorCode::Failed, e.to_string()))?;
        if parsed.starts_with(&reserved) {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "vault path {parsed} is under {}, the node identity, which no plugin may use; use another branch such as m/74'/1'",
                    crate::vault::IDENTITY_BRANCH
                ),
            ));
        }
        let granted = self.caller.grants.vault.iter().any(|prefix| {
            DerivationPath::parse(prefix.as_str()).is_ok_and(|prefix| parsed.starts_with(&prefix))
        });
        if !granted {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` is not granted vault path {parsed}; {}",
                    self.caller.plugin,
                    GrantSet::vault_grant_hint(&self.caller.plugin, &parsed.to_string())
                ),
            ));
        }
        Ok((self.services("the vault")?.vault(), parsed))
    }
}

fn vault_result<T>(result: Result<T, crate::vault::VaultError>) -> Result<T, wit::CallError> {
    result.map_err(|e| bindings::call_error_to_wit(crate::vault::to_call_error(e)))
}

impl imports::vault::Host for CallState {
    async fn public_key(
        &mut self,
        curve: imports::vault::Curve,
        path: String,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        let curve = match curve {
            imports::vault::Curve::Ed25519 => crate::vault::Curve::Ed25519,
            imports::vault::Curve::Secp256k1 => crate::vault::Curve::Secp256k1,
        };
        Ok(match self.check_vault(&path) {
            Ok((vault, path)) => vault_result(vault.public_key(curve, &path)),
            Err(e) => Err(bindings::call_error_to_wit(e)),
        })
    }

    async fn sign_ed25519(
        &mut self,
        path: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        Ok(match self.check_vault(&path) {
            Ok((vault, path)) => vault_result(vault.sign_ed25519(&path, &message)),
            Err(e) => Err(bindings::call_error_to_wit(e)),
        })
    }

    async fn sign_secp256k1(
        &mut self,
        path: String,
        digest: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        Ok(match self.check_vault(&path) {
            Ok((vault, path)) => vault_result(vault.sign_secp256k1(&path, &digest)),
            Err(e) => Err(bindings::call_error_to_wit(e)),
        })
    }

    async fn encrypt(
        &mut self,
        path: String,
        plaintext: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        Ok(match self.check_vault(&path) {
            Ok((vault, path)) => vault_result(vault.encrypt(&path, &plaintext)),
            Err(e) => Err(bindings::call_error_to_wit(e)),
        })
    }

    async fn decrypt(
        &mut self,
        path: String,
        envelope: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::CallError>> {
        Ok(match self.check_vault(&path) {
            Ok((vault, path)) => vault_result(vault.decrypt(&path, &envelope)),
            Err(e) => Err(bindings::call_error_to_wit(e)),
        })
    }
}

impl CallState {
    /// The engine and the policy, when the plugin was granted Docker.
    fn check_docker(
        &self,
    ) -> Result<
        (
            Arc<crate::docker::DockerEngine>,
            hearth_registry::DockerGrant,
        ),
        CallError,
    > {
        let Some(policy) = self.caller.grants.docker.clone() else {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` has no docker grant; {}",
                    self.caller.plugin,
                    GrantSet::docker_grant_hint(&self.caller.plugin)
                ),
            ));
        };
        Ok((self.services("docker")?.docker(), policy))
    }
}

fn wit_result<T>(result: Result<T, CallError>) -> wasmtime::Result<Result<T, wit::CallError>> {
    Ok(result.map_err(bindings::call_error_to_wit))
}

impl imports::docker::Host for CallState {
    async fn watch_events(&mut self) -> wasmtime::Result<Result<(), wit::CallError>> {
        let (engine, _) = match self.check_docker() {
            Ok(v) => v,
            Err(e) => return wit_result(Err(e)),
        };
        let Some(sink) = self.caller.ctx.events.clone() else {
            return wit_result(Err(CallError::new(
                ErrorCode::InvalidInput,
                "events stream only to a subscription called from outside the node",
            )));
        };
        wit_result(engine.watch_events(&self.caller.plugin, sink).await)
    }

    async fn create(
        &mut self,
        request: imports::docker::CreateRequest,
    ) -> wasmtime::Result<Result<String, wit::CallError>> {
        let (engine, policy) = match self.check_docker() {
            Ok(v) => v,
            Err(e) => return wit_result(Err(e)),
        };
        let request = crate::docker::CreateRequest {
            image: request.image,
            name: request.name,
            env: request.env,
            ports: request
                .ports
                .into_iter()
                .map(|p| crate::docker::PortMapping {
                    container_port: p.container_port,
                    host_port: p.host_port,
                    protocol: p.protocol,
                })
                .collect(),
            command: request.command,
            labels: request.labels,
        };
        wit_result(engine.create(&self.caller.plugin, &policy, request).await)
    }

    async fn inspect(
        &mut self,
        container: String,
    ) -> wasmtime::Result<Result<String, wit::CallError>> {
        match self.check_docker() {
            Ok((engine, _)) => wit_result(engine.inspect(&self.caller.plugin, &container).await),
            Err(e) => wit_result(Err(e)),
        }
    }

    async fn list_containers(
        &mut self,
        all: bool,
    ) -> wasmtime::Result<Result<String, wit::CallError>> {
        match self.check_docker() {
            Ok((engine, _)) => wit_result(engine.list(&self.caller.plugin, all).await),
            Err(e) => wit_result(Err(e)),
        }
    }

    async fn stop(
        &mut self,
        container: String,
        timeout_secs: u32,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        match self.check_docker() {
            Ok((engine, _)) => wit_result(
                engine
                    .stop(&self.caller.plugin, &container, timeout_secs)
                    .await,
            ),
            Err(e) => wit_result(Err(e)),
        }
    }

    async fn remove(
        &mut self,
        container: String,
        force: bool,
    ) -> wasmtime::Result<Result<(), wit::CallError>> {
        match self.check_docker() {
            Ok((engine, _)) => {
                wit_result(engine.remove(&self.caller.plugin, &container, force).await)
            }
            Err(e) => wit_result(Err(e)),
        }
    }

    async fn logs(
        &mut self,
        container: String,
        tail: u32,
    ) -> wasmtime::Result<Result<Vec<String>, wit::CallError>> {
        match self.check_docker() {
            Ok((engine, _)) => wit_result(engine.logs(&self.caller.plugin, &container, tail).await),
            Err(e) => wit_result(Err(e)),
        }
    }
}

impl imports::log::Host for CallState {
    async fn emit(&mut self, level: imports::log::Level, message: String) -> wasmtime::Result<()> {
        use imports::log::Level;
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = &*self.caller.plugin;
        let request_id = &self.caller.ctx.request_id;
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, request_id, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, request_id, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, request_id, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, request_id, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, request_id, "{message}"),
        }
        Ok(())
    }
}
