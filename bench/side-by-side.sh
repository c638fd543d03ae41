#!/usr/bin/env bash
# The same JSON echo on Hearth and on Extism, in process, measured in one
# run on this machine and printed side by side with their ratio.
#
#   bench/side-by-side.sh [SECONDS_PER_ROUND] [ROUNDS]     (0.5 s × 10 by default)
#
# Hearth: host/examples/echo_calls.rs calls the bundled echo plugin's `ping`
# through `Runtime::call`, with warm instances and with a fresh instance per
# call (the default). Extism 1.41: bench/extism calls `ping` of
# bench/extism/plugin (extism-pdk, wasm32-wasip1, WASI on) on one plugin
# kept warm, and on a new plugin per call made from a `CompiledPlugin`
# compiled once. Same input `{"msg":"hi"}`, same timing loop (a warm-up
# round, then rounds; the median round's mean µs per call).
#
# Extism 1.41 pulls wasmtime 49, which needs rustc 1.96: its side builds
# with `cargo +1.96.0` in its own workspace and target directory, so the
# node's build is unaffected. The script installs that toolchain and the
# wasm32-wasip1 target when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUND="${1:-0.5}"
ROUNDS="${2:-10}"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}"

if ! rustup run 1.96.0 rustc --version > /dev/null 2>&1; then
    echo "== installing rustc 1.96.0 for the Extism side" >&2
    rustup toolchain install 1.96.0 --profile minimal
fi
rustup target add --toolchain 1.96.0 wasm32-wasip1 > /dev/null 2>&1

echo "== building Hearth's side" >&2
CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p hearth-host --example echo_calls
echo "== building Extism's side (its first build compiles wasmtime 49: minutes)" >&2
(cd bench/extism/plugin && CARGO_TARGET_DIR="$TARGET/extism-plugin" \
    cargo +1.96.0 build --release -q --target wasm32-wasip1)
(cd bench/extism && CARGO_TARGET_DIR="$TARGET/extism" cargo +1.96.0 build --release -q)

echo "== measuring ($ROUNDS rounds of ${ROUND} s per mode)" >&2
RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT
"$TARGET/release/examples/echo_calls" "$ROUND" "$ROUNDS" >> "$RESULTS"
"$TARGET/extism/release/extism-echo-bench" \
    "$TARGET/extism-plugin/wasm32-wasip1/release/extism_echo.wasm" "$ROUND" "$ROUNDS" >> "$RESULTS"

python3 - "$RESULTS" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["runtime"], r["mode"])] = r
print("| JSON echo, in process | Hearth µs/call (min–max) | Extism µs/call (min–max) | Extism ÷ Hearth |")
print("|---|---|---|---|")
names = {"warm": "warm instance, call after call", "fresh": "a fresh instance per call"}
for mode in ("warm", "fresh"):
    h, e = rows[("hearth", mode)], rows[("extism", mode)]
    print("| %s | %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %.1f× |" % (
        names[mode], h["median_us"], h["min_us"], h["max_us"],
        e["median_us"], e["min_us"], e["max_us"], e["median_us"] / h["median_us"]))
PY
