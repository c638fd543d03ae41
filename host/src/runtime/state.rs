//! Per-call store state: WASI's context, the resource table, the limiter,
//! the stderr tail, the calling plugin, and the node's [`Resources`].
//!
//! The runtime knows no capability: each one in the `capabilities` layer
//! links its own interface and finds what it serves from (the kv store, the
//! vault, the Docker engine, the OperationEnv) in [`Resources`] by type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Instant;

use hearth_registry::{CallError, ErrorCode, GrantSet};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;

use super::limits::{CallLimiter, LimitHit};
use super::stderr::StderrTail;
use crate::call::PluginCaller;

/// Bytes of a plugin's stderr kept per call, for panic messages.
const STDERR_CAPACITY: usize = 16 * 1024;

/// What the capabilities serve plugins from, built once per node: one
/// value per type (the kv store, the vault, the Docker engine, the
/// OperationEnv's handle). A map by type so the runtime names none of them.
#[derive(Default)]
pub struct Resources {
    map: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Resources {
    /// Adds `value`, replacing any earlier value of its type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.map.insert(TypeId::of::<T>(), value);
    }

    /// The value of type `T`, if one was added.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.map
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|any| any.downcast::<T>().ok())
    }
}

/// An effect a capability holds back until its call succeeds (the kv
/// writes of a call): committed when the call returns successfully,
/// dropped when it fails, traps or runs out of time.
pub trait Staged: Any + Send {
    /// Makes the effect durable.
    fn commit(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), CallError>> + Send>>;
    /// For finding a capability's own staged effect again.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Effects commit in ascending order: writes (0) before what reports
    /// them (node events, 1), so a report never precedes a failed write.
    fn order(&self) -> u8 {
        0
    }
}

/// A finished call's slots, dropped after its effects are committed (or
/// with them, when the call failed).
struct SlotsUntilCommitted {
    _slots: HashMap<TypeId, Box<dyn Any + Send>>,
}

impl Staged for SlotsUntilCommitted {
    fn commit(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), CallError>> + Send>> {
        Box::pin(async move {
            drop(self);
            Ok(())
        })
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// What the `http` capability decides a call's requests by: who is asking,
/// what it was granted, and until when it may wait. Rebuilt for each call
/// from its [`PluginCaller`]; the capability implements the `wasi:http`
/// hooks on it.
pub struct OutboundHttp {
    /// The plugin sending.
    pub plugin: Arc<str>,
    /// Its grants (`grants.http` is what counts).
    pub grants: Arc<GrantSet>,
    /// The call's deadline.
    pub deadline: Instant,
}

impl OutboundHttp {
    fn for_caller(caller: &PluginCaller) -> Self {
        OutboundHttp {
            plugin: caller.plugin.clone(),
            grants: caller.grants.clone(),
            deadline: caller.ctx.deadline,
        }
    }
}

/// The data of one call's store.
pub struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHttp,
    table: ResourceTable,
    stderr: StderrTail,
    limiter: CallLimiter,
    caller: PluginCaller,
    /// `None` while a static plugin lists its specs: it may not call out.
    resources: Option<Arc<Resources>>,
    /// True while the plugin lists its operations.
    listing: bool,
    /// Effects held back until the call succeeds, by capability type.
    staged: HashMap<TypeId, Box<dyn Staged>>,
    /// What a capability keeps for the rest of one call (a Docker event
    /// watch), by type; dropped when the call ends.
    slots: HashMap<TypeId, Box<dyn Any + Send>>,
}

impl CallState {
    pub(super) fn new(
        caller: PluginCaller,
        resources: Option<Arc<Resources>>,
        limiter: CallLimiter,
    ) -> Self {
        let stderr = StderrTail::new(STDERR_CAPACITY);
        // No environment, arguments, files or sockets: WASI here is only
        // what Rust's std needs to start (clocks, random, stderr).
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        CallState {
            wasi,
            http: WasiHttpCtx::new(),
            outbound: OutboundHttp::for_caller(&caller),
            table: ResourceTable::new(),
            stderr,
            limiter,
            caller,
            resources,
            listing: false,
            staged: HashMap::new(),
            slots: HashMap::new(),
        }
    }

    /// Marks this store as listing the plugin's operations.
    pub(super) fn set_listing(&mut self) {
        self.listing = true;
    }

    /// Prepares a warm instance's state for its next call.
    pub(super) fn reset(&mut self, caller: PluginCaller, resources: Arc<Resources>) {
        self.outbound = OutboundHttp::for_caller(&caller);
        self.caller = caller;
        self.resources = Some(resources);
        self.limiter.hit = None;
        self.stderr.clear();
        self.staged.clear();
        self.slots.clear();
    }

    /// This call's staged effect of type `T`, made with `make` on first use.
    pub fn staged<T: Staged>(&mut self, make: impl FnOnce() -> T) -> Option<&mut T> {
        self.staged
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(make()))
            .as_any_mut()
            .downcast_mut::<T>()
    }

    /// This call's slot of type `T`, made with `make` on first use; it
    /// lives until the call ends.
    pub fn slot<T: Any + Send>(&mut self, make: impl FnOnce() -> T) -> &mut T {
        let slot = self
            .slots
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(make()));
        match slot.downcast_mut::<T>() {
            Some(value) => value,
            // The map is keyed by the value's own type.
            None => unreachable_slot(),
        }
    }

    /// Ends the call: its slots go (a warm instance must not keep a
    /// process lock or an event watch until its next call) and its staged
    /// effects come out, to commit after success or to drop. The slots
    /// leave last, after the commits: a process lock taken to serialize a
    /// plugin's read-modify-write of its kv passes on only once the write
    /// is durable.
    pub(super) fn end_call(&mut self) -> Vec<Box<dyn Staged>> {
        let mut effects: Vec<Box<dyn Staged>> =
            self.staged.drain().map(|(_, effect)| effect).collect();
        effects.sort_by_key(|effect| effect.order());
        if !self.slots.is_empty() {
            effects.push(Box::new(SlotsUntilCommitted {
                _slots: std::mem::take(&mut self.slots),
            }));
        }
        effects
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

    /// What `wasi:http` borrows for one import call.
    pub fn http_parts(&mut self) -> (&mut WasiHttpCtx, &mut ResourceTable, &mut OutboundHttp) {
        (&mut self.http, &mut self.table, &mut self.outbound)
    }

    /// The plugin making the call and the call it is serving.
    pub fn caller(&self) -> &PluginCaller {
        &self.caller
    }

    /// The node's value of type `T` for capability `what`; `denied` while
    /// the plugin lists its operations at load, when it may not call out.
    pub fn resource<T: Send + Sync + 'static>(&self, what: &str) -> Result<Arc<T>, CallError> {
        let listing = || {
            CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` may not use {what} while listing its operations",
                    self.caller.plugin
                ),
            )
        };
        let Some(resources) = &self.resources else {
            return Err(listing());
        };
        resources.get::<T>().ok_or_else(|| {
            if self.listing {
                listing()
            } else {
                CallError::new(
                    ErrorCode::Unavailable,
                    format!("this node does not provide {what}"),
                )
            }
        })
    }
}

#[allow(clippy::panic)] // a slot keyed by TypeId always holds that type
fn unreachable_slot() -> ! {
    panic!("a call slot held a value of another type")
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
