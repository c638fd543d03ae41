#!/usr/bin/env bash
# Pairs two nodes on this machine the way two operators would — each runs
# `host id` and pastes the output into the other's stack.toml — then leaves
# them running so you can call across: `host --socket $DIR/head/run/host.sock
# call /worker-1/echo/ping '{"msg":"hi"}'`. `host bench` against the head's
# socket gives the remote figures in docs/benchmarks.md.
#
#     cargo build --release && examples/mesh-pair.sh [DIR]
#
# Stop them with `kill $(cat DIR/*/pid)`.
set -euo pipefail

HOST=${HOST:-${CARGO_TARGET_DIR:-target}/release/host}
DIR=${1:-/tmp/hearth-pair}
export HEARTH_PASSPHRASE=${HEARTH_PASSPHRASE:-pair-demo-passphrase}

rm -rf "$DIR"
mkdir -p "$DIR/head" "$DIR/worker-1"

serve() { # name
    local n=$1
    HEARTH_DATA_DIR="$DIR/$n/data" "$HOST" serve --config "$DIR/$n/stack.toml" \
        --socket "$DIR/$n/run/host.sock" >"$DIR/$n/banner.txt" 2>"$DIR/$n/serve.log" &
    echo $! >"$DIR/$n/pid"
    for _ in $(seq 1 100); do
        grep -q '^config:' "$DIR/$n/banner.txt" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$n did not start:" >&2
    cat "$DIR/$n/serve.log" >&2
    exit 1
}

port=17400
for n in head worker-1; do
    HEARTH_DATA_DIR="$DIR/$n/data" "$HOST" vault init >/dev/null
    cat >"$DIR/$n/stack.toml" <<TOML
[node]
name = "$n"
[mesh]
listen = "127.0.0.1:$port"
[plugins.echo]
[plugins.relay]
grants.env = ["/node/echo/*", "/worker-1/echo/*"]
TOML
    port=$((port + 1))
    serve "$n"
done

# Each operator prints their node's entry and sends it to the other.
"$HOST" --socket "$DIR/head/run/host.sock" id >"$DIR/head.id"
"$HOST" --socket "$DIR/worker-1/run/host.sock" id >"$DIR/worker-1.id"
kill "$(cat "$DIR/head/pid")" "$(cat "$DIR/worker-1/pid")"
sleep 0.5

# Pasted in; the worker's operator grants the head echo (paths and the
# scope its operations ask for) and the native ops.
cat "$DIR/worker-1.id" >>"$DIR/head/stack.toml"
{
    cat "$DIR/head.id"
    echo 'allow = ["/node/echo/*", "/node/host/*"]'
    echo 'scopes = ["echo:read"]'
} >>"$DIR/worker-1/stack.toml"
serve worker-1
serve head

for _ in $(seq 1 50); do
    "$HOST" --socket "$DIR/head/run/host.sock" peers | grep -q 'worker-1  connected' && break
    sleep 0.1
done
"$HOST" --socket "$DIR/head/run/host.sock" peers
"$HOST" --socket "$DIR/head/run/host.sock" call /worker-1/echo/ping '{"msg":"hello from head"}'
