//! The engine of a node (built from [`super::engine_config`] with the
//! node's limits) and the epoch ticker that makes deadlines work inside
//! wasm.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

use super::engine_config::engine_config;

use crate::config::EngineLimits;

/// How often the engine's epoch advances; the granularity of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Builds the engine shared by every plugin.
pub fn build(limits: &EngineLimits) -> wasmtime::Result<Engine> {
    Engine::new(&engine_config(
        limits.max_instances,
        limits.max_memory_bytes,
        limits.max_table_elements,
    ))
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`] until
/// dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hearth-epoch".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        EpochTicker { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
