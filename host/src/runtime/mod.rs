//! The plugin runtime on wasmtime.
//!
//! Owns the [`wasmtime::Engine`] (component model, async, pooling
//! allocator, epoch interruption), the precompiled-component cache, and the
//! per-call [`wasmtime::Store`]. By default each call gets a fresh instance
//! from the plugin's [`InstancePre`](wasmtime::component::InstancePre), so no
//! state leaks from one call to the next; a plugin may be configured to keep
//! warm instances instead (see [`warm`]).
//!
//! It knows no capability and routes no call: the layer above hands it the
//! linker's imports ([`Runtime::new`]) and the node's [`Resources`] per
//! call, and the `capabilities` layer serve each import. It does turn every
//! way a plugin can fail (trap, panic, deadline, memory, stack, exhausted
//! pool, oversize output) into a [`CallError`] naming the limit and how to
//! raise it.

pub mod bindings;
mod cache;
mod engine;
mod engine_config;
mod limits;
mod state;
mod stderr;
mod warm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_registry::{CallError, ErrorCode, GrantSet, OperationSpec, PluginManifest};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

pub use cache::{CacheOutcome, ComponentCache};
pub use state::{CallState, OutboundHttp, Resources, Staged};

use crate::call::{CallContext, PluginCaller, PluginConfig};
use crate::config::{EngineLimits, PluginSettings};

use bindings::PluginPre;
use limits::{CallLimiter, LimitHit};
use warm::WarmPool;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be configured.
    #[error("cannot start the wasm engine: {0}")]
    Engine(String),
    /// The component failed to compile, link or describe itself.
    #[error("plugin `{plugin}`: {message}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// What went wrong and how to fix it.
        message: String,
    },
    /// The precompiled cache could not be used.
    #[error("component cache: {0}")]
    Cache(#[from] std::io::Error),
}

/// The wasm engine and everything shared across plugins.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: ComponentCache,
    max_instances: u32,
    _ticker: engine::EpochTicker,
}

/// A plugin ready to serve calls.
pub struct LoadedPlugin {
    /// Name from `stack.toml`.
    pub name: String,
    /// Its `plugin.toml`.
    pub manifest: PluginManifest,
    /// What the operator granted it.
    pub grants: Arc<GrantSet>,
    /// How it runs.
    pub settings: PluginSettings,
    /// The operations it offers now, validated (a dynamic plugin's may
    /// change while it runs).
    specs: std::sync::RwLock<Arc<[OperationSpec]>>,
    /// SHA-256 of the component bytes.
    pub component_sha256: String,
    /// Where its compiled code came from: built into `host`, the cache, or
    /// compiled at load.
    pub cache: CacheOutcome,
    /// Where it was loaded from (`bundled` or a path).
    pub origin: String,
    /// Its own configuration.
    pub config: Arc<PluginConfig>,
    /// Configuration keys that are secrets, by secret name.
    pub secret_refs: Arc<PluginConfig>,
    pre: PluginPre<CallState>,
    warm: Option<WarmPool>,
}

/// How long a plugin may take to list its specs at load time.
const SPECS_DEADLINE: Duration = Duration::from_secs(5);

impl LoadedPlugin {
    /// The operations it offers now.
    pub fn specs(&self) -> Arc<[OperationSpec]> {
        match self.specs.read() {
            Ok(specs) => specs.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces its operations (after it listed them again).
    pub fn set_specs(&self, specs: Vec<OperationSpec>) {
        let specs: Arc<[OperationSpec]> = Arc::from(specs);
        match self.specs.write() {
            Ok(mut slot) => *slot = specs,
            Err(poisoned) => *poisoned.into_inner() = specs,
        }
    }
}

impl Runtime {
    /// Starts the engine and the epoch ticker; precompiled components are
    /// kept in `cache_dir`. `imports` adds the host's interfaces (the
    /// capabilities) to the linker, beside WASI and the shared types.
    pub fn new(
        cache_dir: std::path::PathBuf,
        limits: EngineLimits,
        imports: impl FnOnce(&mut Linker<CallState>) -> wasmtime::Result<()>,
    ) -> Result<Self, RuntimeError> {
        let engine = engine::build(&limits).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| bindings::add_types_to_linker(&mut linker))
            .and_then(|()| imports(&mut linker))
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let cache = ComponentCache::open(cache_dir, &engine)?;
        let ticker = engine::EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            cache,
            max_instances: limits.max_instances,
            _ticker: ticker,
        })
    }

    /// Compiles (or loads from cache) and links a plugin, then asks it for
    /// its operations ([`Runtime::list_operations`]) and checks them
    /// against its manifest and settings. `listing` is what the plugin may
    /// use while it lists them (the secret store, for a dynamic plugin's
    /// credentials).
    pub async fn load(
        &self,
        source: &crate::config::PluginSource,
        listing: &Arc<Resources>,
    ) -> Result<LoadedPlugin, RuntimeError> {
        let name = source.name.as_str();
        let fail = |message: String| RuntimeError::Plugin {
            plugin: name.to_owned(),
            message,
        };
        let (component, cache, sha256) =
            self.cache
                .load_or_compile(&self.engine, &source.component, source.precompiled)?;
        let pre = self.link(&component).map_err(|e| {
            let text = format!("{e:#}");
            match imported_version(&text) {
                Some(version) if !bindings::WIT_PACKAGE.ends_with(&format!("@{version}")) => {
                    fail(format!(
                        "it was built against hearth:node@{version}, and this host serves {}: rebuild it with the current hearth-sdk ({text})",
                        bindings::WIT_PACKAGE
                    ))
                }
                _ => fail(format!(
                    "cannot link: {text}; the plugin imports something this host does not provide (built against another version of hearth:node?)"
                )),
            }
        })?;
        let settings = source.settings.clone();
        let warm =
            (settings.warm_instances > 0).then(|| WarmPool::new(settings.warm_instances as usize));
        let plugin = LoadedPlugin {
            name: name.to_owned(),
            manifest: source.manifest.clone(),
            grants: Arc::new(source.grants.clone()),
            settings,
            specs: std::sync::RwLock::new(Arc::from(Vec::new())),
            component_sha256: sha256,
            cache,
            origin: source.origin.clone(),
            config: Arc::new(source.config.clone()),
            secret_refs: Arc::new(source.secret_refs.clone()),
            pre,
            warm,
        };
        let specs = self.list_operations(&plugin, listing).await?;
        plugin
            .manifest
            .check_exports(specs.iter().map(|s| s.path.name()))
            .map_err(|e| fail(e.to_string()))?;
        // Named operations were checked against a manifest's list when the
        // configuration was resolved; without a list, against the exports.
        if let Some(op) = plugin
            .settings
            .operation_timeouts
            .keys()
            .find(|op| !specs.iter().any(|s| s.path.name() == op.as_str()))
        {
            let names: Vec<&str> = specs.iter().map(|s| s.path.name()).collect();
            return Err(fail(format!(
                "`operation_timeouts.{op}` in [plugins.{name}] of stack.toml names no operation it offers ({})",
                names.join(", ")
            )));
        }
        plugin.set_specs(specs);
        Ok(plugin)
    }

    /// Asks `plugin` for its operations in a fresh instance and validates
    /// each spec. A static plugin lists them with no grant; a dynamic one
    /// (`dynamic = true`) with its grants (HTTP above all) and `listing`'s
    /// resources, within its call timeout. Errors name the plugin, the
    /// operation and the problem.
    pub async fn list_operations(
        &self,
        plugin: &LoadedPlugin,
        listing: &Arc<Resources>,
    ) -> Result<Vec<OperationSpec>, RuntimeError> {
        let name = plugin.name.as_str();
        let fail = |message: String| RuntimeError::Plugin {
            plugin: name.to_owned(),
            message,
        };
        let dynamic = plugin.manifest.dynamic;
        let (grants, resources, deadline) = if dynamic {
            (
                plugin.grants.clone(),
                Some(listing.clone()),
                plugin.settings.timeout.max(SPECS_DEADLINE),
            )
        } else {
            (Arc::new(GrantSet::default()), None, SPECS_DEADLINE)
        };
        let caller = PluginCaller {
            plugin: Arc::from(name),
            grants,
            config: plugin.config.clone(),
            secret_refs: plugin.secret_refs.clone(),
            ctx: CallContext::internal(Instant::now() + deadline),
        };
        let mut store = self.store(&plugin.settings, caller, resources);
        store.data_mut().set_listing();
        let listed = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.hearth_node_handler().call_specs(&mut store).await
        };
        let raw_specs = match tokio::time::timeout(deadline, listed).await {
            Err(_) => {
                return Err(fail(format!(
                    "did not list its operations within {} ms",
                    deadline.as_millis()
                )));
            }
            Ok(Err(e)) => {
                return Err(fail(format!(
                    "failed to list its operations: {}",
                    describe_failure(&e, &store)
                )));
            }
            Ok(Ok(Err(e))) => {
                let e = bindings::call_error_from_wit(e);
                return Err(fail(format!(
                    "could not list its operations ({}): {}",
                    e.code, e.message
                )));
            }
            Ok(Ok(Ok(specs))) => specs,
        };
        let namespace = plugin.manifest.namespace().to_owned();
        let mut specs: Vec<OperationSpec> = Vec::with_capacity(raw_specs.len());
        for raw in raw_specs {
            let spec = OperationSpec::from_parts(
                &namespace,
                &raw.name,
                raw.kind.into(),
                &raw.description,
                &raw.input_schema,
                &raw.output_schema,
                raw.scopes,
            )
            .and_then(|spec| spec.with_event_schema(raw.event_schema.as_deref()))
            .map_err(|e| fail(e.to_string()))?;
            if specs.iter().any(|s| s.path == spec.path) {
                return Err(fail(format!(
                    "operation `{}` is listed twice; give each operation its own name",
                    raw.name
                )));
            }
            specs.push(spec);
        }
        Ok(specs)
    }

    /// Warm instances idle now (0 when the plugin runs fresh instances).
    pub fn warm_idle(plugin: &LoadedPlugin) -> usize {
        plugin.warm.as_ref().map_or(0, WarmPool::idle)
    }

    fn link(&self, component: &Component) -> wasmtime::Result<PluginPre<CallState>> {
        let instance_pre = self.linker.instantiate_pre(component)?;
        PluginPre::new(instance_pre)
    }

    fn store(
        &self,
        settings: &PluginSettings,
        caller: PluginCaller,
        resources: Option<Arc<Resources>>,
    ) -> Store<CallState> {
        let deadline = caller.ctx.deadline;
        let limiter = CallLimiter::new(settings.memory_bytes, settings.table_elements);
        let mut store = Store::new(&self.engine, CallState::new(caller, resources, limiter));
        store.limiter(|state| state.limiter());
        arm_deadline(&mut store, deadline);
        store
    }

    /// Runs operation `op` of `plugin`, in a fresh instance or a warm one.
    pub async fn call(
        &self,
        plugin: &LoadedPlugin,
        resources: Arc<Resources>,
        op: &str,
        input: &str,
        ctx: CallContext,
    ) -> Result<String, CallError> {
        let deadline = ctx.deadline;
        let by_caller = ctx.deadline_by_caller;
        let wit_ctx = bindings::context_to_wit(&ctx);
        let caller = PluginCaller {
            plugin: Arc::from(plugin.name.as_str()),
            grants: plugin.grants.clone(),
            config: plugin.config.clone(),
            secret_refs: plugin.secret_refs.clone(),
            ctx,
        };
        let run = async {
            let (output, staged) = match &plugin.warm {
                None => {
                    self.call_fresh(plugin, caller, resources, op, input, &wit_ctx)
                        .await
                }
                Some(pool) => {
                    self.call_warm(pool, plugin, caller, resources, op, input, &wit_ctx)
                        .await
                }
            }?;
            if output.len() > plugin.settings.max_output_bytes {
                return Err(CallError::new(
                    ErrorCode::ResourceExhausted,
                    format!(
                        "operation `{op}` of plugin `{}` returned {} bytes, over `limits.max_output_bytes` ({}); return less or raise the limit in stack.toml",
                        plugin.name,
                        output.len(),
                        plugin.settings.max_output_bytes
                    ),
                ));
            }
            Ok((output, staged))
        };
        // The epoch callback enforces the deadline inside wasm; this timer
        // also covers time spent in host calls.
        let (output, staged) = match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(result) => result?,
            Err(_) => return Err(timeout_error(plugin, op, by_caller)),
        };
        // The call succeeded in time: now, and only now, its held-back
        // effects (kv writes) become durable. Outside the deadline, so a
        // commit is never cut halfway.
        for effect in staged {
            effect.commit().await?;
        }
        Ok(output)
    }

    async fn call_fresh(
        &self,
        plugin: &LoadedPlugin,
        caller: PluginCaller,
        resources: Arc<Resources>,
        op: &str,
        input: &str,
        wit_ctx: &bindings::wit::CallContext,
    ) -> Result<(String, Vec<Box<dyn Staged>>), CallError> {
        let mut store = self.store(&plugin.settings, caller, Some(resources));
        let instance = plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.instantiate_error(plugin, &e, &store))?;
        let output = invoke(plugin, &instance, &mut store, op, input, wit_ctx).await?;
        Ok((output, store.data_mut().end_call()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_warm(
        &self,
        pool: &WarmPool,
        plugin: &LoadedPlugin,
        caller: PluginCaller,
        resources: Arc<Resources>,
        op: &str,
        input: &str,
        wit_ctx: &bindings::wit::CallContext,
    ) -> Result<(String, Vec<Box<dyn Staged>>), CallError> {
        let deadline = caller.ctx.deadline;
        let mut warm = match pool.take() {
            Some(mut warm) => {
                warm.store.data_mut().reset(caller, resources);
                arm_deadline(&mut warm.store, deadline);
                warm
            }
            None => {
                let mut store = self.store(&plugin.settings, caller, Some(resources));
                let instance = plugin
                    .pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| self.instantiate_error(plugin, &e, &store))?;
                warm::WarmInstance { store, instance }
            }
        };
        let result = invoke(plugin, &warm.instance, &mut warm.store, op, input, wit_ctx).await;
        // Whatever happened, this call's held-back effects leave with it:
        // to be committed on success, dropped otherwise.
        let staged = warm.store.data_mut().end_call();
        let result = result.map(|output| (output, staged));
        match &result {
            // The plugin ran to completion (its own typed errors included):
            // the instance is sound and goes back to the pool.
            Ok(_) => pool.put(warm),
            Err(e)
                if !matches!(
                    e.code,
                    ErrorCode::Trapped | ErrorCode::Timeout | ErrorCode::ResourceExhausted
                ) =>
            {
                pool.put(warm)
            }
            // After a trap or a limit the instance's state is suspect.
            Err(_) => drop(warm),
        }
        result
    }

    fn instantiate_error(
        &self,
        plugin: &LoadedPlugin,
        err: &wasmtime::Error,
        store: &Store<CallState>,
    ) -> CallError {
        if let Some(hit) = store.data().limit_hit() {
            return limit_error(plugin, hit);
        }
        if err
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return CallError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "no free plugin instance: all {} are in use (running, nested or warm); retry, or raise `limits.max_instances` in stack.toml",
                    self.max_instances
                ),
            );
        }
        CallError::new(
            ErrorCode::Failed,
            format!(
                "cannot start an instance of plugin `{}`: {err:#}",
                plugin.name
            ),
        )
    }
}

/// The `hearth:node` version a link error names, if any (`0.1.0`).
fn imported_version(link_error: &str) -> Option<String> {
    let rest = link_error.split("hearth:node/").nth(1)?;
    let version: String = rest
        .split_once('@')?
        .1
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!version.is_empty()).then_some(version)
}

/// Makes the store fail with [`DeadlineExceeded`] once `deadline` passes.
fn arm_deadline(store: &mut Store<CallState>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else {
            // Yield to tokio at every tick so a busy plugin cannot starve
            // other calls on the same worker thread.
            Ok(wasmtime::UpdateDeadline::Yield(1))
        }
    });
}

/// Calls the handler export and maps every failure to a typed error.
async fn invoke(
    plugin: &LoadedPlugin,
    instance: &bindings::Plugin,
    store: &mut Store<CallState>,
    op: &str,
    input: &str,
    wit_ctx: &bindings::wit::CallContext,
) -> Result<String, CallError> {
    let result = instance
        .hearth_node_handler()
        .call_handle(&mut *store, op, input, wit_ctx)
        .await;
    match result {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(bindings::call_error_from_wit(error)),
        Err(err) => Err(failure_to_call_error(plugin, op, &err, store)),
    }
}

/// Marker error raised by the epoch callback when a call's deadline passed.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// A timeout, blamed on whoever set the deadline: the caller (who may give
/// more time) or the operation's limit (which `stack.toml` sets).
fn timeout_error(plugin: &LoadedPlugin, op: &str, by_caller: bool) -> CallError {
    let limit = plugin.settings.timeout_for(op);
    let message = if by_caller {
        format!(
            "operation `{op}` of plugin `{}` did not finish before its caller's deadline, which was shorter than the operation's limit of {} ms; give the call more time (`--timeout-ms`, the `Timeout-Ms` header, or the calling operation's own deadline)",
            plugin.name,
            limit.as_millis(),
        )
    } else {
        format!(
            "operation `{op}` of plugin `{}` did not finish before its deadline (the operation's limit is {} ms; a caller may only shorten it); raise `timeout_ms` or `operation_timeouts.{op}` in [plugins.{}] of stack.toml",
            plugin.name,
            limit.as_millis(),
            plugin.name
        )
    };
    CallError::new(ErrorCode::Timeout, message)
}

fn limit_error(plugin: &LoadedPlugin, hit: &LimitHit) -> CallError {
    let message = match hit {
        LimitHit::Memory { limit, desired } => format!(
            "plugin `{}` tried to grow its memory to {} MiB, over its limit of {} MiB; raise `memory_mib` in [plugins.{}] of stack.toml",
            plugin.name,
            desired.div_ceil(1 << 20),
            limit >> 20,
            plugin.name
        ),
        LimitHit::Table { limit, desired } => format!(
            "plugin `{}` tried to grow a table to {desired} elements, over `limits.table_elements` ({limit})",
            plugin.name
        ),
    };
    CallError::new(ErrorCode::ResourceExhausted, message)
}

fn failure_to_call_error(
    plugin: &LoadedPlugin,
    op: &str,
    err: &wasmtime::Error,
    store: &Store<CallState>,
) -> CallError {
    if err.downcast_ref::<DeadlineExceeded>().is_some() {
        return timeout_error(plugin, op, store.data().caller().ctx.deadline_by_caller);
    }
    if let Some(hit) = store.data().limit_hit() {
        return limit_error(plugin, hit);
    }
    if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::StackOverflow) {
        return CallError::new(
            ErrorCode::ResourceExhausted,
            format!(
                "operation `{op}` of plugin `{}` exhausted the wasm stack ({} KiB), usually unbounded recursion",
                plugin.name,
                engine_config::MAX_WASM_STACK >> 10
            ),
        );
    }
    // Rust keeps its stack in linear memory: overflowing it is an
    // out-of-bounds access below address 0, not a wasm stack overflow.
    let hint = if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::MemoryOutOfBounds) {
        " (in a Rust plugin this is usually a stack overflow from unbounded recursion)"
    } else {
        ""
    };
    CallError::new(
        ErrorCode::Trapped,
        format!(
            "plugin `{}` failed in `{op}`: {}{hint}; the node is unaffected",
            plugin.name,
            describe_failure(err, store)
        ),
    )
}

/// The trap plus, when the guest panicked, its panic message from stderr.
fn describe_failure(err: &wasmtime::Error, store: &Store<CallState>) -> String {
    let trap = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err}"),
    };
    match store.data().last_stderr_line() {
        Some(line) => format!("{trap} ({line})"),
        None => trap,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hearth_registry::StackFile;

    use super::engine_config::{PRECOMPILED_MEMORY_BYTES, wasmtime_build};
    use super::{cache, engine, imported_version};
    use crate::config::{BUNDLED, DEFAULT_STACK, EngineLimits, NodeConfig, PRECOMPILED_BY};

    /// False (and says why) when this build compiled no artifacts
    /// (`HEARTH_PRECOMPILE=0`, a cross build).
    fn precompiled() -> bool {
        let made = BUNDLED.iter().all(|p| !p.precompiled.is_empty());
        if !made {
            eprintln!("this build did not precompile the bundled plugins; nothing to check");
        }
        made
    }

    #[test]
    fn the_build_script_linked_the_nodes_own_wasmtime() {
        // With another resolver cargo builds wasmtime's tree twice, with
        // different features, and the artifacts would be refused.
        if precompiled() {
            assert_eq!(PRECOMPILED_BY, wasmtime_build());
        }
    }

    #[test]
    fn the_default_limits_make_the_engine_the_bundled_plugins_were_compiled_for() {
        let stack = StackFile::parse(DEFAULT_STACK, Path::new("default")).unwrap();
        let limits = NodeConfig::from_stack(stack, None).unwrap().engine_limits();
        assert_eq!(limits.max_memory_bytes, PRECOMPILED_MEMORY_BYTES);
        if !precompiled() {
            return;
        }
        let engine = engine::build(&limits).unwrap();
        for plugin in BUNDLED {
            if let Err(err) = cache::deserialize_built_in(&engine, plugin.precompiled) {
                panic!(
                    "bundled {} was not precompiled for this engine: {err:#}",
                    plugin.name
                );
            }
        }
    }

    #[test]
    fn bytes_that_are_no_artifact_are_refused() {
        let stack = StackFile::parse(DEFAULT_STACK, Path::new("default")).unwrap();
        let limits = NodeConfig::from_stack(stack, None).unwrap().engine_limits();
        let engine = engine::build(&limits).unwrap();
        for bytes in [&b""[..], b"\x7fELF not really", BUNDLED[0].component] {
            assert!(cache::deserialize_built_in(&engine, bytes).is_err());
        }
    }

    #[test]
    fn another_memory_limit_refuses_the_built_in_artifacts() {
        if !precompiled() {
            return;
        }
        let engine = engine::build(&EngineLimits {
            max_instances: 4,
            max_memory_bytes: 32 << 20,
            max_table_elements: 1000,
        })
        .unwrap();
        let Err(err) = cache::deserialize_built_in(&engine, BUNDLED[0].precompiled) else {
            panic!("a 32 MiB reservation generates other code, yet the artifact loaded");
        };
        assert!(format!("{err:#}").contains("memory"), "{err:#}");
    }

    #[test]
    fn a_link_error_names_the_version_a_plugin_was_built_against() {
        let error = "component imports instance `hearth:node/env@0.1.0`, but a matching implementation was not found in the linker";
        assert_eq!(imported_version(error).as_deref(), Some("0.1.0"));
        assert_eq!(
            imported_version("component imports instance `wasi:http/types@0.2.0`"),
            None
        );
    }
}
