#!/usr/bin/env bash
# Gossip across separate hosts: four Linux network namespaces joined by veth pairs to a
# bridge, one gossip-node per namespace with in-process fault injection (10% outbound loss,
# 20-80 ms outbound delay: gossip-node's --loss and --delay-ms testing options; the kernel's
# netem qdisc is not available everywhere), driven by the `multihost` binary, which checks that
# broadcasts, key/value state and feeds all complete (see examples/src/multihost.rs).
#
#   10.77.0.1 (ns <prefix>-h1, eth0) --veth-- v1 ┐
#   10.77.0.2 (ns <prefix>-h2, eth0) --veth-- v2 ├ br0 (ns <prefix>-br)
#   10.77.0.3 (ns <prefix>-h3, eth0) --veth-- v3 │
#   10.77.0.4 (ns <prefix>-h4, eth0) --veth-- v4 ┘
#
# Every interface, address and the bridge live inside namespaces this script creates (names
# gmh<PID>-*, so parallel runs do not collide); nothing is added to the caller's namespace.
# Every namespace it made, with the processes inside, is removed on exit, failure, Ctrl-C or
# TERM. Needs root and iproute2 (installed with apt-get when missing and possible); without
# them it prints why it skips and exits 0.
#
# Usage: scripts/multihost.sh            builds the release binaries it needs, then runs
#        MULTIHOST_NO_BUILD=1 scripts/multihost.sh    uses the binaries already built
#        MULTIHOST_RNG_SEED=N scripts/multihost.sh    repeats the nodes' random choices of a
#                                                     run (its summary's rng_seed)
#        MULTIHOST_PROFILE=debug scripts/multihost.sh  unoptimised binaries (CI)
# Binaries come from ${CARGO_TARGET_DIR:-target}/release (or /debug).
#
# The last stdout line is one JSON object: the driver's summary (hosts, broadcasts_delivered,
# broadcasts_expected, kv_converged, feeds_complete, timings and counters) plus
# veth_tx_packets (packets the nodes' veth interfaces sent, read from the kernel),
# via_veth (every node bound 10.77.0.x and the veths carried at least every datagram the
# nodes sent) and script_seconds. A skipped run prints {"skipped":true,"reason":"..."}.
# Exit status: 0 when everything completed (or the run was skipped), non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly HOSTS=4
readonly SUBNET=10.77.0
readonly PORT=7946
readonly LOSS=0.1
readonly DELAY_MS=20-80
# Workload: broadcasts per node, keys per node (each set twice), messages per feed.
readonly BROADCASTS=25
readonly KEYS=8
readonly FEED_MESSAGES=25
# Bound on each phase of the driver (ready, membership, broadcasts, key/value, feeds).
readonly PHASE_TIMEOUT_SECS=30
# Bound on the whole driver run; past it the driver is killed.
readonly DRIVER_TIMEOUT_SECS=200
readonly PREFIX="gmh$$"
readonly BRIDGE_NS="$PREFIX-br"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# MULTIHOST_PROFILE=debug uses (and builds) the unoptimised binaries, as CI does after
# `cargo test --workspace` built them; release by default.
PROFILE="${MULTIHOST_PROFILE:-release}"
case "$PROFILE" in
    release) PROFILE_FLAG=(--release) ;;
    debug) PROFILE_FLAG=() ;;
    *) printf 'multihost.sh: MULTIHOST_PROFILE must be release or debug, not %s\n' "$PROFILE" >&2; exit 2 ;;
esac
BIN="$TARGET_DIR/$PROFILE"

log() { printf 'multihost.sh: %s\n' "$*" >&2; }

skip() {
    local reason=${1//$'\n'/ }
    reason=${reason//\\//}
    reason=${reason//\"/\'}
    printf 'multihost.sh: SKIP: %s\n' "$reason"
    printf '{"skipped":true,"reason":"%s"}\n' "$reason"
    exit 0
}

CREATED=()
OUT=""
DRIVER_PID=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local ns pid
    if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        # `timeout` passes the signal on to the driver.
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        sleep 1
    fi
    for ns in "${CREATED[@]}"; do
        # The driver's children may outlive it (killed driver): end what runs inside our own
        # namespaces, by process id.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
    for ns in "${CREATED[@]}"; do
        ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
    done
    if ((${#CREATED[@]})); then
        local left
        left=$(ip netns list 2>/dev/null | grep -c "^$PREFIX-" || true)
        if [ "$left" != 0 ]; then
            log "$left namespace(s) $PREFIX-* still exist"
            status=1
        else
            log "removed namespaces ${CREATED[*]} (and with them the veths and the bridge)"
        fi
    fi
    [ -n "$OUT" ] && rm -f "$OUT"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(id -u)" != 0 ]; then
    skip "network namespaces need root (running as uid $(id -u))"
fi
if ! command -v ip >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        log "installing iproute2"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >&2 ||
            { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >&2; } ||
            true
    fi
    command -v ip >/dev/null 2>&1 || skip "the ip command (iproute2) is missing and could not be installed"
fi
# Probe: can this machine make a namespace and run a program in it (containers often cannot)?
if ! err=$(ip netns add "$PREFIX-probe" 2>&1); then
    skip "cannot create a network namespace: $err"
fi
if ! err=$(ip netns exec "$PREFIX-probe" true 2>&1); then
    ip netns del "$PREFIX-probe" 2>/dev/null || true
    skip "cannot run a program in a network namespace: $err"
fi
ip netns del "$PREFIX-probe"

if [ "${MULTIHOST_NO_BUILD:-0}" != 1 ]; then
    log "building gossip-node and multihost ($PROFILE)"
    cargo build "${PROFILE_FLAG[@]}" --quiet -p gossip-examples --bin gossip-node --bin multihost
fi
for bin in gossip-node multihost; do
    [ -x "$BIN/$bin" ] || { log "missing $BIN/$bin"; exit 1; }
done

START=$SECONDS
# Runs one setup command; a failure means this machine cannot build the network (for example
# no bridge or veth support): skip, after the cleanup trap removed what was made.
setup() {
    local err
    if ! err=$("$@" 2>&1); then
        skip "cannot build the test network: '$*' failed: $err"
    fi
}
setup ip netns add "$BRIDGE_NS"
CREATED+=("$BRIDGE_NS")
setup ip -n "$BRIDGE_NS" link add br0 type bridge
setup ip -n "$BRIDGE_NS" link set br0 up
HOST_ARGS=()
for i in $(seq 1 $HOSTS); do
    ns="$PREFIX-h$i"
    setup ip netns add "$ns"
    CREATED+=("$ns")
    setup ip -n "$BRIDGE_NS" link add "v$i" type veth peer name eth0 netns "$ns"
    setup ip -n "$BRIDGE_NS" link set "v$i" master br0
    setup ip -n "$BRIDGE_NS" link set "v$i" up
    setup ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0
    setup ip -n "$ns" link set eth0 up
    setup ip -n "$ns" link set lo up
    HOST_ARGS+=(--host "$ns@$SUBNET.$i")
done
log "network up: ${CREATED[*]} ($SUBNET.1-$HOSTS/24 on bridge br0 in $BRIDGE_NS)"

veth_tx_packets() {
    local total=0 i n
    for i in $(seq 1 $HOSTS); do
        n=$(ip netns exec "$PREFIX-h$i" cat /sys/class/net/eth0/statistics/tx_packets)
        total=$((total + n))
    done
    echo "$total"
}
TX_BEFORE=$(veth_tx_packets)

OUT=$(mktemp)
PASSPHRASE="multihost-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# A fresh seed of the nodes' own random choices each run (printed in the summary as rng_seed;
# MULTIHOST_RNG_SEED=N repeats one).
RNG_SEED="${MULTIHOST_RNG_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' \n')}"
# In the background, so that INT and TERM interrupt `wait` and the cleanup runs at once.
timeout --kill-after=10 "$DRIVER_TIMEOUT_SECS" "$BIN/multihost" "${HOST_ARGS[@]}" \
    --port "$PORT" --loss "$LOSS" --delay-ms "$DELAY_MS" \
    --broadcasts "$BROADCASTS" --keys "$KEYS" --feed-messages "$FEED_MESSAGES" \
    --rng-seed "$RNG_SEED" \
    --phase-timeout-secs "$PHASE_TIMEOUT_SECS" --passphrase "$PASSPHRASE" \
    --node-bin "$BIN/gossip-node" >"$OUT" &
DRIVER_PID=$!
set +e
wait "$DRIVER_PID"
DRIVER_STATUS=$?
set -e
DRIVER_PID=""
TX=$(($(veth_tx_packets) - TX_BEFORE))

# Everything but the summary goes to stderr, so the summary stays the last stdout line.
head -n -1 "$OUT" >&2 || true
SUMMARY=$(tail -n 1 "$OUT")
if [[ "$SUMMARY" != \{*\} ]]; then
    log "the driver printed no summary (exit status $DRIVER_STATUS)"
    printf '{"hosts":%d,"broadcasts_delivered":0,"broadcasts_expected":null,"kv_converged":false,"feeds_complete":false,"error":"no summary, driver exit status %d","veth_tx_packets":%d,"script_seconds":%d}\n' \
        "$HOSTS" "$DRIVER_STATUS" "$TX" $((SECONDS - START))
    exit 1
fi

# Did the traffic really cross the veths? Every node bound its namespace's 10.77.0.x address
# (the driver checks the bind too), and the veths sent at least the datagrams the nodes sent.
VIA_VETH=true
if [[ "$SUMMARY" =~ \"addrs\":\[([^]]*)\] ]]; then
    IFS=',' read -r -a ADDRS <<<"${BASH_REMATCH[1]}"
    [ "${#ADDRS[@]}" = "$HOSTS" ] || VIA_VETH=false
    for addr in "${ADDRS[@]}"; do
        [[ "$addr" =~ ^\"$SUBNET\.[1-9]:$PORT\"$ ]] || VIA_VETH=false
    done
else
    VIA_VETH=false
fi
SENT=0
[[ "$SUMMARY" =~ \"datagrams_sent\":([0-9]+) ]] && SENT=${BASH_REMATCH[1]}
if [ "$SENT" = 0 ] || [ "$TX" -lt "$SENT" ]; then
    VIA_VETH=false
fi
log "nodes sent $SENT datagrams; their veths sent $TX packets"

STATUS=$DRIVER_STATUS
if [ "$VIA_VETH" != true ]; then
    log "the traffic did not go through the veths as expected"
    [ "$STATUS" = 0 ] && STATUS=1
fi
printf '%s,"veth_tx_packets":%d,"via_veth":%s,"script_seconds":%d}\n' \
    "${SUMMARY%\}}" "$TX" "$VIA_VETH" $((SECONDS - START))
exit "$STATUS"
