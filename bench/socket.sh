#!/usr/bin/env bash
# Echo over the Unix socket: the native echo, the echo plugin with a fresh
# instance per call, and the echo plugin with warm instances, at 1 and 64
# connections, measured in one run and printed side by side with each
# plugin figure as a share of the native one.
#
#   bench/socket.sh [SECONDS]     (10 by default)
#
# Two nodes on this machine: one with the default stack (fresh instances),
# one with examples/bench-warm.toml (echo keeps 64 warm instances). Each
# bench (`host bench`, a closed loop: N connections, one call in flight
# each) warms up for 1 s before it measures. The load generator shares the
# machine's cores with the node, as in every figure of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}"
cargo build --release -q -p hearth-host
HOST="$CARGO_TARGET_DIR/release/host"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start() { # name [config]
    local dir="$WORK/$1"
    mkdir -p "$dir"
    if [ -n "${2:-}" ]; then
        HEARTH_DATA_DIR="$dir" "$HOST" serve --config "$2" > "$dir/log" 2>&1 &
    else
        HEARTH_DATA_DIR="$dir" "$HOST" serve > "$dir/log" 2>&1 &
    fi
    PIDS+=($!)
    for _ in $(seq 200); do
        grep -q "ready in" "$dir/log" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "node $1 did not start:" >&2
    cat "$dir/log" >&2
    exit 1
}
start fresh
start warm examples/bench-warm.toml

# bench NODE PATH CONNS -> "calls/s p50 p99" (ms)
bench() {
    "$HOST" --socket "$WORK/$1/run/host.sock" bench "$2" '{"msg":"hi"}' -c "$3" -d "$SECONDS_MEASURED" --json \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); e=sum(r["errors"].values()); print("%.0f %.3f %.3f %d" % (r["calls_per_s"], r["p50_ms"], r["p99_ms"], e))'
}

printf '| conns | native calls/s (p50 / p99 ms) | fresh calls/s (p50 / p99 ms) | fresh ÷ native | warm calls/s (p50 / p99 ms) | warm ÷ native |\n'
printf '|---|---|---|---|---|---|\n'
for conns in 1 64; do
    read -r n n50 n99 ne < <(bench fresh /node/host/echo "$conns")
    read -r f f50 f99 fe < <(bench fresh /node/echo/ping "$conns")
    read -r w w50 w99 we < <(bench warm /node/echo/ping "$conns")
    if [ "$ne$fe$we" != "000" ]; then echo "errors: native $ne, fresh $fe, warm $we" >&2; fi
    printf '| %s | %s (%s / %s) | %s (%s / %s) | %s %% | %s (%s / %s) | %s %% |\n' \
        "$conns" "$n" "$n50" "$n99" "$f" "$f50" "$f99" "$((100 * f / n))" "$w" "$w50" "$w99" "$((100 * w / n))"
done
