#!/usr/bin/env bash
# Runs every fuzz target for a bounded time each, on corpora seeded from the
# golden files and kept across runs. A crash, a hang (-timeout) or an
# allocation beyond the bound (-malloc_limit_mb) fails the run and leaves
# the input in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz; installs both when missing.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
shift || true
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "== installing the nightly toolchain (cargo-fuzz needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
target_dir="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
corpora="${HEARTH_FUZZ_CORPUS:-$HOME/.cache/hearth-fuzz-corpus}"
./seed-corpus.sh "$corpora" >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds}s"
    log="$(mktemp)"
    status=0
    cargo +nightly fuzz run --target-dir "$target_dir" "$target" "$corpora/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "$log"
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/"
        exit 1
    fi
    rm -f "$log"
done
