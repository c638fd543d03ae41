//! `misbehave`: a plugin that does, on request, everything a plugin must
//! not be able to hurt the node with. Test-only; never bundled.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use hearth_sdk::env;
use hearth_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Done {
    ok: bool,
}

fn ok(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
    Ok(Done { ok: true })
}

static CALLS: AtomicU64 = AtomicU64::new(0);

#[derive(Serialize, JsonSchema)]
struct Count {
    /// Calls this instance has served: always 1 with fresh instances.
    calls: u64,
}

fn count(_cx: &Context, _input: Empty) -> Result<Count, CallError> {
    Ok(Count {
        calls: CALLS.fetch_add(1, Ordering::Relaxed) + 1,
    })
}

fn trap(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
    core::arch::wasm32::unreachable()
}

fn panic(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
    panic!("misbehave: deliberate panic")
}

fn spin(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn hog(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![1u8; 1 << 20]));
    }
}

// Unbounded on purpose: the point is to overflow the stack.
#[allow(unconditional_recursion)]
fn depth(n: u64) -> u64 {
    // Not a tail call, and opaque to the optimiser: each level keeps a frame.
    let buffer = black_box([n; 16]);
    black_box(depth(n + 1)) + buffer[black_box(3)]
}

fn recurse(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
    black_box(depth(0));
    Ok(Done { ok: true })
}

fn cycle(_cx: &Context, _input: Empty) -> Result<Done, CallError> {
    let reply: env::Reply<Done> = env::call("/node/misbehave/cycle", &serde_json::json!({}))?;
    Ok(reply.output)
}

#[derive(Serialize, JsonSchema)]
struct Flood {
    data: String,
}

fn flood(_cx: &Context, _input: Empty) -> Result<Flood, CallError> {
    Ok(Flood {
        data: "x".repeat(10 << 20),
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Sleep {
    ms: u64,
}

fn sleep(_cx: &Context, input: Sleep) -> Result<Done, CallError> {
    std::thread::sleep(std::time::Duration::from_millis(input.ms));
    Ok(Done { ok: true })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Scribble {
    /// Key to write.
    key: String,
    /// How to end after writing: `ok`, `error`, `trap`, `panic` or `spin`.
    then: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Scribbled {
    /// What this call read back of its own write.
    read_back: Option<String>,
    /// Keys under the prefix, as this call sees them.
    keys: Vec<String>,
}

/// Writes `key` (and deletes `key` + `-gone`), reads both back, then ends
/// as asked: only `ok` may leave the writes behind.
fn scribble(_cx: &Context, input: Scribble) -> Result<Scribbled, CallError> {
    hearth_sdk::kv::set(&input.key, b"written")?;
    hearth_sdk::kv::delete(&format!("{}-gone", input.key))?;
    let read_back =
        hearth_sdk::kv::get(&input.key)?.map(|v| String::from_utf8_lossy(&v).into_owned());
    let keys = hearth_sdk::kv::list_keys(&input.key, 10)?;
    match input.then.as_str() {
        "error" => Err(CallError::failed("failing after writing")),
        "trap" => core::arch::wasm32::unreachable(),
        "panic" => panic!("panicking after writing"),
        "spin" => loop {
            black_box(0);
        },
        _ => Ok(Scribbled { read_back, keys }),
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Peek {
    key: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Peeked {
    value: Option<String>,
}

fn peek(_cx: &Context, input: Peek) -> Result<Peeked, CallError> {
    let value = hearth_sdk::kv::get(&input.key)?.map(|v| String::from_utf8_lossy(&v).into_owned());
    Ok(Peeked { value })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConfigQuery {
    key: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct ConfigSeen {
    value: Option<String>,
    all: Vec<(String, String)>,
}

fn config(_cx: &Context, input: ConfigQuery) -> Result<ConfigSeen, CallError> {
    Ok(ConfigSeen {
        value: hearth_sdk::config::get(&input.key)?,
        all: hearth_sdk::config::all(),
    })
}

/// A marker value to write into, or look for in, linear memory.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Stain {
    /// The 8-byte pattern (never 0).
    marker: u64,
    /// KiB of fresh heap to fill with it (beside the static buffer).
    #[serde(default)]
    kib: u32,
}

#[derive(Serialize, JsonSchema)]
struct Stains {
    /// 8-byte-aligned places in the whole linear memory holding the marker.
    found: u64,
    /// Linear memory size in bytes.
    memory_bytes: u64,
}

/// Zero-initialised, so it lives in memory the image does not cover.
static mut STAINED: [u64; 512] = [0; 512];

/// Writes `marker` into a static buffer, the stack and `kib` KiB of heap
/// that is never freed: what a later call must not be able to see.
fn stain(cx: &Context, input: Stain) -> Result<Stains, CallError> {
    let words = input.kib as usize * 128;
    let heap: Vec<u64> = vec![input.marker; words];
    std::mem::forget(black_box(heap));
    let stack = black_box([input.marker; 64]);
    // SAFETY: one call at a time runs in an instance; nothing else holds
    // a reference to the buffer.
    unsafe {
        let buffer = &mut *std::ptr::addr_of_mut!(STAINED);
        buffer.fill(input.marker);
        black_box(&buffer);
    }
    black_box(stack);
    scan(cx, input)
}

/// Counts the marker across the whole linear memory, byte 0 to its end.
fn scan(_cx: &Context, input: Stain) -> Result<Stains, CallError> {
    if input.marker == 0 {
        return Err(CallError::new(
            ErrorCode::InvalidInput,
            "marker 0 is everywhere",
        ));
    }
    let memory_bytes = (core::arch::wasm32::memory_size(0) as u64) << 16;
    let mut found = 0;
    // Address 0 is a valid wasm address; reading through a raw pointer
    // avoids Rust's null checks.
    for addr in (8..memory_bytes).step_by(8) {
        // SAFETY: every address below memory.size is readable in wasm.
        let word = unsafe { std::ptr::read_volatile(addr as usize as *const u64) };
        if word == input.marker {
            found += 1;
        }
    }
    Ok(Stains {
        found,
        memory_bytes,
    })
}

struct Misbehave;

impl Plugin for Misbehave {
    fn operations(ops: &mut Operations) {
        ops.query("ok", "Succeed.", ok);
        ops.query("count", "Count calls served by this instance.", count);
        ops.query("trap", "Execute `unreachable`.", trap);
        ops.query("panic", "Panic.", panic);
        ops.query("spin", "Loop forever.", spin);
        ops.query("hog", "Allocate memory without bound.", hog);
        ops.query("recurse", "Recurse without bound.", recurse);
        ops.query("cycle", "Call itself through env without bound.", cycle);
        ops.query("flood", "Return a 10 MiB result.", flood);
        ops.query("sleep", "Sleep in a host call.", sleep);
        ops.mutation(
            "scribble",
            "Write kv, then end as asked (ok, error, trap, panic, spin).",
            scribble,
        );
        ops.query("peek", "Read a kv value.", peek);
        ops.query("config", "Show this instance's configuration.", config);
        ops.query(
            "stain",
            "Write a marker into static, stack and heap memory; count it.",
            stain,
        );
        ops.query("scan", "Count a marker across all linear memory.", scan);
    }
}

hearth_sdk::export_plugin!(Misbehave);
