#!/usr/bin/env bash
# Runs the codec benchmark and prints, per datagram size, the mean time of each function and
# the ratios codec / raw_aead and seal_open / raw_aead (the baseline is measured in the same run).
#
# Usage: scripts/bench-ratios.sh [--no-run]
#   --no-run   only read the estimates of the last run
# Honours CARGO_TARGET_DIR (criterion writes to $CARGO_TARGET_DIR/criterion).
set -euo pipefail

cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

if [[ "${1:-}" != "--no-run" ]]; then
    cargo bench -p gossip-net --bench codec
fi

python3 - "$target_dir/criterion" <<'PY'
import json, os, sys

root = sys.argv[1]

def mean_ns(group, function):
    path = os.path.join(root, group, function, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["mean"]["point_estimate"]

print(f"{'size':>6} {'raw_aead':>12} {'seal_open':>12} {'codec':>12} {'seal/raw':>9} {'codec/raw':>10}")
for size in (64, 512, 1400):
    group = f"datagram_{size}"
    raw, seal, codec = (mean_ns(group, f) for f in ("raw_aead", "seal_open", "codec"))
    print(f"{size:>6} {raw:>10.1f}ns {seal:>10.1f}ns {codec:>10.1f}ns {seal / raw:>8.2f}x {codec / raw:>9.2f}x")
PY
