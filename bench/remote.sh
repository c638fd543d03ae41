#!/usr/bin/env bash
# Remote calls through the head beside raw quinn, measured in one run.
#
#   bench/remote.sh [SECONDS]     (10 by default)
#
# examples/mesh-pair.sh starts `head` and `worker-1` on loopback, paired as
# two operators would. `host bench` drives the head's Unix socket: the
# native echo on the head itself, then on worker-1 (client → head → QUIC
# stream → worker-1 → back). host/examples/quinn_echo.rs is raw quinn with
# the mesh's TLS 1.3 and windows: one connection, one bidirectional stream
# per call, a 64-byte request echoed back, the same closed loop.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}"
cargo build --release -q -p hearth-host --bin host --example quinn_echo
HOST="$CARGO_TARGET_DIR/release/host"
QUINN="$CARGO_TARGET_DIR/release/examples/quinn_echo"

WORK="$(mktemp -d)"
QUINN_PID=""
cleanup() {
    kill $(cat "$WORK"/pair/*/pid 2>/dev/null) $QUINN_PID 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

HOST="$HOST" examples/mesh-pair.sh "$WORK/pair" > /dev/null
SOCKET="$WORK/pair/head/run/host.sock"
PORT=$(python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
"$QUINN" server "127.0.0.1:$PORT" > /dev/null &
QUINN_PID=$!
sleep 0.3

summary='import json,sys; r=json.load(sys.stdin); print("%.0f %.3f %.3f" % (r["calls_per_s"], r["p50_ms"], r["p99_ms"]))'
hearth() { "$HOST" --socket "$SOCKET" bench "$1" '{"msg":"hi"}' -c "$2" -d "$SECONDS_MEASURED" --json | python3 -c "$summary"; }
raw() { "$QUINN" client "127.0.0.1:$PORT" "$1" "$SECONDS_MEASURED" | python3 -c "$summary"; }

printf '| in flight | native echo on the head: calls/s (p50 / p99 ms) | on worker-1 through the head | raw quinn, a stream per call | worker-1 ÷ raw quinn |\n'
printf '|---|---|---|---|---|\n'
for conns in 1 64; do
    read -r l l50 l99 < <(hearth /node/host/echo "$conns")
    read -r r r50 r99 < <(hearth /worker-1/host/echo "$conns")
    read -r q q50 q99 < <(raw "$conns")
    printf '| %s | %s (%s / %s) | %s (%s / %s) | %s (%s / %s) | %s %% |\n' \
        "$conns" "$l" "$l50" "$l99" "$r" "$r50" "$r99" "$q" "$q50" "$q99" "$((100 * r / q))"
done
