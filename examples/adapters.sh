#!/usr/bin/env bash
# The adapters walk-through: examples/adapters.toml on a node named
# `adapters`, a second node `remote` paired with it, and the adapted
# operations called from the CLI, from a plugin through `env`, and from the
# remote node over the mesh.
#
#     cargo build --release && examples/adapters.sh [DIR]
#
# It starts Prism (the Petstore mock) on port 4010 and needs npx for the
# filesystem server, which it serves /tmp/hearth-share. Set PRISM to a
# prism binary to skip npx for it. The nodes and Prism keep running; stop
# them with `examples/adapters.sh stop [DIR]`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
HOST=${HOST:-${CARGO_TARGET_DIR:-$REPO/target}/release/host}
STOP=false
if [ "${1:-}" = stop ]; then
    STOP=true
    shift
fi
DIR=${1:-/tmp/hearth-adapters}
SHARE=/tmp/hearth-share
export HEARTH_PASSPHRASE=${HEARTH_PASSPHRASE:-adapters-demo-passphrase}

# Each was started in its own process group (npx runs prism as a child).
for pid in "$DIR"/*.pid; do [ -e "$pid" ] && kill -- "-$(cat "$pid")" 2>/dev/null || true; done
$STOP && exit 0
if (exec 3<>/dev/tcp/127.0.0.1/4010) 2>/dev/null; then
    echo "port 4010 is taken (a Prism left running?): free it first" >&2
    exit 1
fi
rm -rf "$DIR"
mkdir -p "$DIR/adapters" "$DIR/remote" "$SHARE"
echo "hello from the share" >"$SHARE/hello.txt"

wait_for_port() { # port what
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$2 did not listen on port $1" >&2
    exit 1
}

# shellcheck disable=SC2086 # PRISM may be a command with arguments
setsid ${PRISM:-npx -y @stoplight/prism-cli@5} mock -h 127.0.0.1 -p 4010 \
    "$REPO/tests/fixtures/petstore-3.0.json" >"$DIR/prism.log" 2>&1 &
echo $! >"$DIR/prism.pid"
wait_for_port 4010 prism

serve() { # name
    local n=$1
    HEARTH_DATA_DIR="$DIR/$n/data" setsid "$HOST" serve --config "$DIR/$n/stack.toml" \
        --socket "$DIR/$n/run/host.sock" >"$DIR/$n/banner.txt" 2>"$DIR/$n/serve.log" &
    echo $! >"$DIR/$n.pid"
    for _ in $(seq 1 900); do
        grep -q '^config:' "$DIR/$n/banner.txt" 2>/dev/null && return 0
        kill -0 "$(cat "$DIR/$n.pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "$n did not start:" >&2
    cat "$DIR/$n/serve.log" >&2
    exit 1
}
on() { # node, then the host command
    local n=$1
    shift
    "$HOST" --socket "$DIR/$n/run/host.sock" "$@"
}
show() { # node, then the host command: printed, then run
    echo "[$1]\$ host ${*:2}"
    on "$@"
}

# The example stack as it is (its document path made absolute for the
# copy), with a mesh address; the remote node has none of the adapters.
sed "s|\"\.\./tests/fixtures/|\"$REPO/tests/fixtures/|" "$REPO/examples/adapters.toml" \
    >"$DIR/adapters/stack.toml"
printf '\n[mesh]\nlisten = "127.0.0.1:17420"\n' >>"$DIR/adapters/stack.toml"
printf '[node]\nname = "remote"\n[mesh]\nlisten = "127.0.0.1:17421"\n' >"$DIR/remote/stack.toml"
for n in adapters remote; do
    HEARTH_DATA_DIR="$DIR/$n/data" "$HOST" vault init >/dev/null
    serve "$n"
    on "$n" id >"$DIR/$n.id"
    kill -- "-$(cat "$DIR/$n.pid")"
done
sleep 0.5
# Each operator pastes the other's `host id`; `adapters` lets `remote`
# call the adapted operations and nothing else.
{ cat "$DIR/remote.id"; echo 'allow = ["/node/files/*", "/node/petstore/*"]'; } >>"$DIR/adapters/stack.toml"
cat "$DIR/adapters.id" >>"$DIR/remote/stack.toml"
serve adapters
serve remote
for _ in $(seq 1 100); do
    on remote peers | grep -q 'adapters  connected' && break
    sleep 0.1
done

show adapters ops | grep -E '/node/(files|petstore)/'
show adapters call /node/files/read_text_file "{\"path\": \"$SHARE/hello.txt\"}"
show adapters call /node/files/write_file "{\"path\": \"$SHARE/from-cli.txt\", \"content\": \"written through hearth\"}"
show adapters call /node/petstore/get-pet-by-id '{"petId": 1}'
show adapters call /node/relay/forward '{"path": "/node/petstore/get-inventory", "input": {}}'
show adapters call /node/relay/forward "{\"path\": \"/node/files/list_directory\", \"input\": {\"path\": \"$SHARE\"}}"
show remote call /adapters/files/read_text_file "{\"path\": \"$SHARE/from-cli.txt\"}"
show remote call /adapters/petstore/place-order '{"body": {"petId": 1, "quantity": 2, "status": "placed"}}'
