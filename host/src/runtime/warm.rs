//! Warm instances: a plugin that opts in keeps up to N instantiated
//! components between calls, skipping instantiation on the hot path.
//!
//! Globals survive from one call to the next, so this is only for plugins
//! written to expect it (manifest `runtime.reuse_instances`, or the
//! operator's `warm_instances`). An instance is dropped, never reused,
//! after a trap, a timeout or a limit hit.

use std::sync::Mutex;

use wasmtime::Store;

use super::bindings;
use super::state::CallState;

/// One instance with its store.
pub struct WarmInstance {
    pub store: Store<CallState>,
    pub instance: bindings::Plugin,
}

/// Idle instances of one plugin.
pub struct WarmPool {
    idle: Mutex<Vec<WarmInstance>>,
    max_idle: usize,
}

impl WarmPool {
    /// A pool keeping at most `max_idle` instances.
    pub fn new(max_idle: usize) -> Self {
        WarmPool {
            idle: Mutex::new(Vec::with_capacity(max_idle)),
            max_idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<WarmInstance>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle instance, if any.
    pub fn take(&self) -> Option<WarmInstance> {
        self.lock().pop()
    }

    /// Returns an instance after a clean call; dropped when the pool is full.
    pub fn put(&self, instance: WarmInstance) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(instance);
        }
    }

    /// Instances idle now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }
}
