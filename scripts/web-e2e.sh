#!/usr/bin/env bash
# Browser test of the live web view: starts a 5-node cluster with `--web` on 127.0.0.1,
# opens the page in headless Chromium (driven by chromedriver from scripts/web-e2e.py), waits
# (at most WEB_E2E_WAIT seconds, default 90) until the 5 nodes, their partial-view edges and a
# feed's eager links are drawn, checks them against the cluster's own /snapshot JSON, and saves
# a screenshot to the path it prints (WEB_E2E_SCREENSHOT, default in a fresh temporary
# directory). Exits non-zero otherwise. Every process it starts is stopped on exit.
#
# Installs Debian's chromium, chromium-driver, python3 and curl when missing (needs root, as
# in CI). Honours CARGO_TARGET_DIR. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=5
wait_secs="${WEB_E2E_WAIT:-90}"
target_dir="${CARGO_TARGET_DIR:-target}"

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
        echo "web-e2e: missing ${missing[*]}; run as root or install them" >&2
        exit 2
    fi
    echo "web-e2e: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
chromium --version 2>/dev/null || true

cargo build -p gossip-examples --bin cluster
cluster_bin="$target_dir/debug/cluster"

work="$(mktemp -d /tmp/web-e2e.XXXXXX)"
screenshot="${WEB_E2E_SCREENSHOT:-$work/web-view.png}"
pids=()

cleanup() {
    local status=$?
    set +m # no job notices while stopping them
    # Each process leads a process group of its own (job control, `set -m`): signal the whole
    # group (the cluster's children, chromedriver's browser), politely first.
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.2
    done
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    rm -rf "$work/profile"
    if ((status != 0)); then
        echo "web-e2e: FAILED; cluster stderr (last lines):" >&2
        tail -n 20 "$work/cluster.err" >&2 || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Job control: each background process below leads its own process group (pgid = its pid).
set -m
web_port="$(free_port)"
"$cluster_bin" --nodes "$nodes" --messages 50 --keys 2 --no-kill \
    --web "127.0.0.1:$web_port" --web-linger-secs 600 \
    >"$work/cluster.out" 2>"$work/cluster.err" </dev/null &
pids+=("$!")
echo "web-e2e: cluster of $nodes nodes, web view at http://127.0.0.1:$web_port/"

driver_port="$(free_port)"
chromedriver --port="$driver_port" --allowed-ips=127.0.0.1 \
    >"$work/chromedriver.log" 2>&1 </dev/null &
pids+=("$!")

# Bounded waits: chromedriver answers, and the cluster serves a snapshot of every node.
for i in $(seq 1 150); do
    curl -fsS "http://127.0.0.1:$driver_port/status" >/dev/null 2>&1 && break
    ((i < 150)) || { echo "web-e2e: chromedriver did not start" >&2; exit 1; }
    sleep 0.2
done
for i in $(seq 1 240); do
    count="$(curl -fsS "http://127.0.0.1:$web_port/snapshot" 2>/dev/null |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin)["nodes"]))' 2>/dev/null || echo 0)"
    [[ "$count" == "$nodes" ]] && break
    ((i < 240)) || { echo "web-e2e: the cluster reported $count of $nodes nodes in 120 s" >&2; exit 1; }
    kill -0 "${pids[0]}" 2>/dev/null || { echo "web-e2e: the cluster exited" >&2; exit 1; }
    sleep 0.5
done

python3 scripts/web-e2e.py \
    --driver "http://127.0.0.1:$driver_port" \
    --page "http://127.0.0.1:$web_port/" \
    --nodes "$nodes" \
    --wait "$wait_secs" \
    --screenshot "$screenshot" \
    --profile "$work/profile"
[[ -s "$screenshot" ]] || { echo "web-e2e: no screenshot written" >&2; exit 1; }
echo "web-e2e: screenshot: $screenshot ($(wc -c <"$screenshot") bytes)"
echo "web-e2e: passed"
