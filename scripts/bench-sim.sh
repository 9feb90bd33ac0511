#!/usr/bin/env bash
# Reproduces the rows of BENCHMARKS.md: runs the `sim` example for each scenario and size
# given (default: 100 1000), appending each run's JSON report (the last line of stdout) to
# $OUT/results.jsonl and its /usr/bin/time -v summary to $OUT/<row>.time.
#
#   scripts/bench-sim.sh            # N = 100 and 1,000
#   scripts/bench-sim.sh 10000      # N = 10,000 (about 1-3 minutes per row on 2 cores)
#   ONLY='crash' scripts/bench-sim.sh 10000   # only the rows whose name matches the regex
#
# Every row is deterministic apart from wall_s and peak_rss_mb: rerun one by its command.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gossip-examples --bin sim
BIN="${CARGO_TARGET_DIR:-target}/release/sim"
OUT="${OUT:-target/sim-bench}"
mkdir -p "$OUT"
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(100 1000)

for n in "${sizes[@]}"; do
  churn=$(( n / 200 )); [ "$churn" -lt 1 ] && churn=1
  rows=(
    "tree-single|--nodes $n --mode tree --scenario single"
    "broadcast-random|--nodes $n --mode broadcast --scenario random"
  )
  # The first broadcast after a mass crash depends much on the seed (whether the sender's
  # first pushes land on survivors): each crash row runs with seeds $CRASH_SEEDS.
  for seed in ${CRASH_SEEDS:-1}; do
    for pct in 40 50 60; do
      rows+=("broadcast-crash$pct-seed$seed|--nodes $n --mode broadcast --scenario single --crash 0.$pct --messages 5 --seed $seed")
    done
  done
  rows+=(
    "tree-crash40|--nodes $n --mode tree --scenario single --crash 0.4 --messages 5"
    "broadcast-churn|--nodes $n --mode broadcast --scenario random --churn $churn"
  )
  for row in "${rows[@]}"; do
    name="${row%%|*}-$n"
    args="${row#*|}"
    [[ "$name" =~ ${ONLY:-.} ]] || continue
    echo "== $name: sim $args --json" >&2
    # shellcheck disable=SC2086
    /usr/bin/time -v "$BIN" $args --json --quiet --out "$OUT" 2> "$OUT/$name.time" \
      | tail -n 1 >> "$OUT/results.jsonl"
    grep -E "Elapsed|Maximum resident" "$OUT/$name.time" >&2
  done
done
