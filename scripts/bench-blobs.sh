#!/usr/bin/env bash
# Runs the blob transfer benchmark and prints both rates and the ratio blob_fetch / raw_udp
# (the baseline is measured in the same run; see gossip-actors/benches/blob_transfer.rs).
#
# Usage: scripts/bench-blobs.sh [--no-run]
#   --no-run   only read the estimates of the last run
# Honours CARGO_TARGET_DIR (criterion writes to $CARGO_TARGET_DIR/criterion).
set -euo pipefail

cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

if [[ "${1:-}" != "--no-run" ]]; then
    cargo bench -p gossip-actors --bench blob_transfer
fi

python3 - "$target_dir/criterion" <<'PY'
import json, os, sys

root = sys.argv[1]
size = 2 << 20

def mean_ns(function):
    path = os.path.join(root, "blob_transfer", function, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["mean"]["point_estimate"]

raw, blob = mean_ns("raw_udp"), mean_ns("blob_fetch")
rate = lambda ns: size / (ns / 1e9) / 1e6
print(f"raw_udp    {raw / 1e6:9.2f} ms per 2 MiB  {rate(raw):8.1f} MB/s")
print(f"blob_fetch {blob / 1e6:9.2f} ms per 2 MiB  {rate(blob):8.1f} MB/s")
print(f"blob_fetch / raw_udp throughput: {raw / blob:.3f} (raw is {blob / raw:.1f}x faster)")
PY
