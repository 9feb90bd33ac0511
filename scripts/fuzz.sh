#!/usr/bin/env bash
# Fuzz every decoder for a bounded time: scripts/fuzz.sh SECONDS [TARGET...]
#
# Runs each cargo-fuzz target of fuzz/ (all of them unless named) for SECONDS seconds, one after
# the other on one core, and prints per target the executions (inputs tried) and crashes.
# Exits non-zero if any target crashed (its input is kept in fuzz/artifacts/TARGET/) or failed
# to build.
#
# Needs cargo-fuzz (installed here with `cargo install cargo-fuzz --locked` if missing) and a
# toolchain that takes -Z flags: the `nightly` toolchain when rustup has one, otherwise the
# default toolchain with RUSTC_BOOTSTRAP=1 (which unlocks -Zsanitizer on stable; FUZZ_BOOTSTRAP=1
# forces this even when nightly exists).
#
# Seeds: every `envelope:` and `datagram:` test vector of docs/wire.md, so the envelope and
# codec targets start from valid inputs. The corpus grows in fuzz/corpus/TARGET/ (git-ignored)
# and is reused by later runs. Set FUZZ_TARGET_DIR to build elsewhere (default fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
shift

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >&2
fi

toolchain=()
if [ "${FUZZ_BOOTSTRAP:-0}" != 1 ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
    echo "toolchain: nightly" >&2
else
    export RUSTC_BOOTSTRAP=1
    echo "toolchain: default with RUSTC_BOOTSTRAP=1" >&2
fi

target_dir="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi

echo "building ${#targets[@]} targets" >&2
cargo "${toolchain[@]}" fuzz build -O --target-dir "$target_dir" >&2

# Seed corpus from the document's vectors (hex wrapped over several lines per field).
seed() {
    local field="$1" dir="$2" skip="${3:-0}"
    mkdir -p "$dir"
    awk -v f="$field:" '
        /^```text/ { if (hex != "") print hex; hex = ""; next }
        /^```/ { if (hex != "") print hex; hex = ""; next }
        index($0, f " ") == 1 && $2 ~ /^[0-9a-f]+$/ { hex = hex $2 }
    ' docs/wire.md | while read -r hex; do
        [ -n "$hex" ] || continue
        local bytes="${hex:$((skip * 2))}"
        printf '%b' "$(sed 's/../\\x&/g' <<<"$bytes")" >"$dir/doc-$(cksum <<<"$hex" | cut -d' ' -f1)"
    done
}
seed envelope fuzz/corpus/envelope
seed datagram fuzz/corpus/codec_plaintext
seed datagram fuzz/corpus/label

failed=0
total_runs=0
printf '%-18s %14s %8s %s\n' target executions crashes seconds
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    before=$(find "fuzz/artifacts/$target" -type f | wc -l)
    log=$(mktemp)
    status=0
    cargo "${toolchain[@]}" fuzz run -O --target-dir "$target_dir" "$target" \
        "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1 || status=$?
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
    if [ -z "$runs" ]; then
        runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    fi
    runs="${runs:-0}"
    after=$(find "fuzz/artifacts/$target" -type f | wc -l)
    crashes=$((after - before))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # it failed without leaving an input (a build or libFuzzer error)
    fi
    printf '%-18s %14s %8s %s\n' "$target" "$runs" "$crashes" "$seconds"
    if [ "$crashes" -ne 0 ]; then
        failed=1
        echo "--- $target: last lines of its log ($log)" >&2
        tail -40 "$log" >&2
    else
        rm -f "$log"
    fi
    total_runs=$((total_runs + runs))
done
echo "total executions: $total_runs; crashed: $([ "$failed" -eq 0 ] && echo no || echo yes)"
exit "$failed"
