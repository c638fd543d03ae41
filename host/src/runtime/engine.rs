//! Engine configuration (pooling allocator, epochs) and the epoch ticker
//! that makes deadlines work inside wasm.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::EngineLimits;

/// How often the engine's epoch advances; the granularity of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bytes of each pooled memory reset with `memset` instead of returned
/// to the kernel: returning them (madvise) costs a TLB shootdown across
/// cores per instance, which dominated fresh-instance calls. The price is
/// resident memory: up to this much per slot ever used, and slots ever used
/// are bounded by the peak of concurrent instances (see below).
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;
/// Same for tables.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Wasm stack per call; deeper recursion fails with `resource-exhausted`.
pub const MAX_WASM_STACK: usize = 512 << 10;
/// Native stack of each async call; must exceed [`MAX_WASM_STACK`] with
/// room for host frames.
const ASYNC_STACK: usize = 2 << 20;

/// Builds the engine shared by every plugin.
pub fn build(limits: &EngineLimits) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    // A wasip2 component made by Rust has a few core instances (the
    // program, the adapter shims) each with a memory and tables.
    pool.total_component_instances(limits.max_instances)
        .total_core_instances(limits.max_instances * 8)
        .total_memories(limits.max_instances * 2)
        .total_tables(limits.max_instances * 8)
        .total_stacks(limits.max_instances)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(limits.max_memory_bytes)
        .table_elements(limits.max_table_elements)
        // Reuse the least recently used free slot rather than fresh ones, so
        // the slots ever touched (each keeping its resident bytes) number no
        // more than the peak of concurrent instances.
        .max_unused_warm_slots(0)
        // Reset only the pages an instance wrote (Linux 6.7+ `PAGEMAP_SCAN`;
        // elsewhere the whole kept-resident prefix is reset).
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        // Keep the virtual reservation per memory modest so a pool of
        // hundreds of instances fits comfortably in the address space.
        .memory_reservation(limits.max_memory_bytes as u64)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(0);
    Engine::new(&config)
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
