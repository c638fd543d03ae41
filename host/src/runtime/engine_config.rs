//! The wasmtime [`Config`] of the node's engine, as plain numbers in and a
//! `Config` out. The host's build script includes this file by path and
//! precompiles the bundled plugins with it, so an artifact made at build
//! time and the engine of a node started with the default limits agree on
//! everything wasmtime checks when it loads one (codegen settings, CPU
//! features, memory reservation). That the build script's wasmtime is the
//! node's own (same version and cargo features, which wasmtime does not
//! check) is the workspace's `resolver = "1"`, tested in `runtime`. Only
//! `wasmtime` and `std` may be used here.

use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

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

/// The largest plugin memory the bundled plugins are precompiled for: the
/// default `limits.memory_mib` of `stack.toml` (a unit test keeps the two
/// in step). It is the only size that shapes compiled code: it is the
/// memory reservation, which decides the bounds checks. A node whose
/// largest plugin memory differs compiles at start instead (wasmtime
/// refuses the artifact; nothing breaks).
// Used by the build script and the tests, not by the library itself.
#[cfg_attr(not(test), allow(dead_code))]
pub const PRECOMPILED_MEMORY_BYTES: usize = 64 << 20;

/// Which compiled wasmtime this is: the type id of its `Engine`, which
/// differs between two builds of wasmtime (or of any crate under it) with
/// different versions, cargo features or compiler flags, and is equal in
/// the build script and the node when cargo built one wasmtime for both.
/// wasmtime checks its version and the engine's settings when it loads an
/// artifact, not its cargo features (which decide, among others, the table
/// of builtin functions compiled code calls); this covers them.
pub fn wasmtime_build() -> String {
    format!("{:?}", std::any::TypeId::of::<wasmtime::Engine>())
}

/// The configuration every engine of this host is built with: a pool of
/// `max_instances` instances, each memory up to `max_memory_bytes`, each
/// table up to `max_table_elements`.
pub fn engine_config(
    max_instances: u32,
    max_memory_bytes: usize,
    max_table_elements: usize,
) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    // A wasip2 component made by Rust has a few core instances (the
    // program, the adapter shims) each with a memory and tables.
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances * 8)
        .total_memories(max_instances * 2)
        .total_tables(max_instances * 8)
        .total_stacks(max_instances)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(max_memory_bytes)
        .table_elements(max_table_elements)
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
        .memory_reservation(max_memory_bytes as u64)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(0);
    config
}
