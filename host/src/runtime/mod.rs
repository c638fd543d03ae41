//! The plugin runtime on wasmtime.
//!
//! Owns the [`wasmtime::Engine`] (component model, async, pooling
//! allocator, epoch interruption), the precompiled-component cache, and the
//! per-call [`wasmtime::Store`]. Each call gets a fresh instance from the
//! plugin's [`InstancePre`](wasmtime::component::InstancePre), so no state
//! leaks from one call to the next.
//!
//! It does not route calls or check grants for `env`: that is the node's
//! job, reached through [`HostServices`]. It does turn every way a plugin
//! can fail (trap, panic, deadline, exhausted pool) into a [`CallError`].

mod bindings;
mod cache;
mod context;
mod engine;
mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_registry::{CallError, ErrorCode, GrantSet, OperationSpec, PluginManifest};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

pub use cache::{CacheOutcome, ComponentCache};
pub use context::{CallContext, Identity};
pub use engine::EngineLimits;
pub use state::{BoxFuture, Caller, HostServices};

use bindings::PluginPre;
use state::CallState;

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
    /// The operations it exports, validated.
    pub specs: Vec<OperationSpec>,
    /// SHA-256 of the component bytes.
    pub component_sha256: String,
    /// Whether the precompiled cache had it.
    pub cache: CacheOutcome,
    /// Where it was loaded from (`bundled` or a path).
    pub origin: String,
    pre: PluginPre<CallState>,
}

/// How long a plugin may take to list its specs at load time.
const SPECS_DEADLINE: Duration = Duration::from_secs(5);

impl Runtime {
    /// Starts the engine and the epoch ticker; precompiled components are
    /// kept in `cache_dir`.
    pub fn new(cache_dir: std::path::PathBuf, limits: EngineLimits) -> Result<Self, RuntimeError> {
        let engine = engine::build(&limits).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| state::add_to_linker(&mut linker))
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let cache = ComponentCache::open(cache_dir, &engine)?;
        let ticker = engine::EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            cache,
            _ticker: ticker,
        })
    }

    /// Compiles (or loads from cache) and links a plugin, then asks it for
    /// its specs and checks them against its manifest.
    pub async fn load(
        &self,
        name: &str,
        manifest: PluginManifest,
        grants: GrantSet,
        component_bytes: &[u8],
        origin: String,
    ) -> Result<LoadedPlugin, RuntimeError> {
        let fail = |message: String| RuntimeError::Plugin {
            plugin: name.to_owned(),
            message,
        };
        let (component, cache, sha256) =
            self.cache.load_or_compile(&self.engine, component_bytes)?;
        let pre = self.link(&component).map_err(|e| {
            fail(format!(
                "cannot link: {e:#}; the plugin imports something this host does not provide (built against another version of hearth:node?)"
            ))
        })?;
        let grants = Arc::new(grants);
        let ctx = CallContext::internal(Instant::now() + SPECS_DEADLINE);
        let caller = Caller {
            plugin: Arc::from(name),
            grants: Arc::new(GrantSet::default()),
            ctx,
        };
        let mut store = self.store(caller.clone(), None);
        let raw_specs = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.hearth_node_handler().call_specs(&mut store).await
        }
        .await
        .map_err(|e| {
            fail(format!(
                "failed to list its operations: {}",
                describe_failure(&e, &store)
            ))
        })?;
        let namespace = manifest.namespace().to_owned();
        let mut specs = Vec::with_capacity(raw_specs.len());
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
            .map_err(|e| fail(e.to_string()))?;
            specs.push(spec);
        }
        manifest
            .check_exports(specs.iter().map(|s| s.path.name()))
            .map_err(|e| fail(e.to_string()))?;
        Ok(LoadedPlugin {
            name: name.to_owned(),
            manifest,
            grants,
            specs,
            component_sha256: sha256,
            cache,
            origin,
            pre,
        })
    }

    fn link(&self, component: &Component) -> wasmtime::Result<PluginPre<CallState>> {
        let instance_pre = self.linker.instantiate_pre(component)?;
        PluginPre::new(instance_pre)
    }

    fn store(&self, caller: Caller, services: Option<Arc<dyn HostServices>>) -> Store<CallState> {
        let deadline = caller.ctx.deadline;
        let mut store = Store::new(&self.engine, CallState::new(caller, services));
        store.limiter(|state| state.limits());
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                // Yield to tokio at every tick so a busy plugin cannot
                // starve other calls on the same worker thread.
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Runs operation `op` of `plugin` in a fresh instance.
    pub async fn call(
        &self,
        plugin: &LoadedPlugin,
        services: Arc<dyn HostServices>,
        op: &str,
        input: &str,
        ctx: CallContext,
    ) -> Result<String, CallError> {
        let deadline = ctx.deadline;
        let wit_ctx = ctx.to_wit();
        let caller = Caller {
            plugin: Arc::from(plugin.name.as_str()),
            grants: plugin.grants.clone(),
            ctx,
        };
        let mut store = self.store(caller, Some(services));
        let run = async {
            let instance = plugin
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| {
                    CallError::new(
                        ErrorCode::ResourceExhausted,
                        format!(
                            "cannot start an instance of plugin `{}`: {e:#}",
                            plugin.name
                        ),
                    )
                })?;
            instance
                .hearth_node_handler()
                .call_handle(&mut store, op, input, &wit_ctx)
                .await
                .map_err(|e| failure_to_call_error(&plugin.name, op, &e, &store))?
                .map_err(bindings::call_error_from_wit)
        };
        // The epoch callback enforces the deadline inside wasm; this timer
        // also covers time spent in host calls.
        match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(result) => result,
            Err(_) => Err(timeout_error(&plugin.name, op)),
        }
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

fn timeout_error(plugin: &str, op: &str) -> CallError {
    CallError::new(
        ErrorCode::Timeout,
        format!(
            "operation `{op}` of plugin `{plugin}` did not finish before its deadline; raise the caller's deadline or `limits.call_timeout_ms`"
        ),
    )
}

fn failure_to_call_error(
    plugin: &str,
    op: &str,
    err: &wasmtime::Error,
    store: &Store<CallState>,
) -> CallError {
    if err.downcast_ref::<DeadlineExceeded>().is_some() {
        return timeout_error(plugin, op);
    }
    CallError::new(
        ErrorCode::Trapped,
        format!(
            "plugin `{plugin}` failed in `{op}`: {}; the node is unaffected",
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
