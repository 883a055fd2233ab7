#!/usr/bin/env bash
# A Bitterbot testnet on one Linux machine: N real `bitterbot node start` processes, each in
# its own network namespace with its own address, joined by veth pairs to a bridge that
# lives in a separate "switch" namespace (the host's own interfaces are never touched).
# Traffic between nodes crosses the kernel's full network stack, not loopback.
#
#   sudo deploy/testnet.sh [N] [--delay MS] [--loss PCT] [--keep] [--timeout S]
#
#   N            nodes (default 5); node 1 is the seed, the others join through it
#   --delay MS   add MS of one-way delay on every node's link (tc netem)
#   --loss PCT   drop PCT % of packets on every node's link (tc netem)
#   --keep       leave the testnet running (tear down later with: testnet.sh --down)
#   --down       remove a testnet left by --keep
#   --timeout S  seconds to wait for every node to join (default 60)
#
# Checks, printed as JSON at the end: every node started, every node is connected to at
# least one peer, each node's routing table size, the time the joins took, and that a node
# can open a TCP connection to the seed across the bridge. Exit status 0 only when every check passed.
# Without root it prints why and exits 0 (a skip), so CI runs it where it can.
# If the kernel has no netem (sch_netem), --delay/--loss are reported as not applied.
set -euo pipefail

PREFIX="bbtn"
SUBNET="10.77.0"
SWITCH_NS="${PREFIX}-switch"
BRIDGE="${PREFIX}br0"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
BITTERBOT="${BITTERBOT:-$HERE/.venv/bin/bitterbot}"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
STATE="${TESTNET_DIR:-/tmp/bitterbot-testnet}"

N=5
DELAY_MS=""
LOSS_PCT=""
KEEP=0
DOWN=0
JOIN_TIMEOUT=60
while [ $# -gt 0 ]; do
  case "$1" in
    --delay) DELAY_MS="$2"; shift 2 ;;
    --loss) LOSS_PCT="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --down) DOWN=1; shift ;;
    --timeout) JOIN_TIMEOUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    [0-9]*) N="$1"; shift ;;
    *) echo "testnet: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "testnet: SKIPPED: needs root to create network namespaces (run with sudo)"
  exit 0
fi
for tool in ip tc; do
  command -v "$tool" >/dev/null || { echo "testnet: SKIPPED: '$tool' (iproute2) not installed"; exit 0; }
done
if ! ip netns add "${PREFIX}-probe" 2>/dev/null; then
  echo "testnet: SKIPPED: this kernel or container does not allow network namespaces"
  exit 0
fi
ip netns del "${PREFIX}-probe"
if [ "$N" -lt 2 ] || [ "$N" -gt 200 ]; then
  echo "testnet: N must be between 2 and 200" >&2
  exit 2
fi

log() { echo "testnet: $*" >&2; }

teardown() {
  local pidfile
  for pidfile in "$STATE"/node*/pid; do
    [ -f "$pidfile" ] || continue
    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
  done
  # nodes shut down cleanly within 5 s of SIGTERM; after 8 s they are killed
  local waited=0
  while [ "$waited" -lt 80 ]; do
    local running=0
    for pidfile in "$STATE"/node*/pid; do
      [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && running=1
    done
    [ "$running" -eq 0 ] && break
    sleep 0.1
    waited=$((waited + 1))
  done
  for pidfile in "$STATE"/node*/pid; do
    [ -f "$pidfile" ] || continue
    kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^${PREFIX}-" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
}

if [ "$DOWN" -eq 1 ]; then
  teardown
  rm -rf "$STATE"
  log "removed"
  exit 0
fi
[ -x "$BITTERBOT" ] || { echo "testnet: $BITTERBOT not found (run make install, or set BITTERBOT)" >&2; exit 2; }

teardown  # leftovers of an earlier run
rm -rf "$STATE"
mkdir -p "$STATE"
[ "$KEEP" -eq 1 ] || trap teardown EXIT

# --- the switch: a bridge in its own namespace ---------------------------------------
ip netns add "$SWITCH_NS"
ip -n "$SWITCH_NS" link set lo up
ip -n "$SWITCH_NS" link add "$BRIDGE" type bridge
ip -n "$SWITCH_NS" link set "$BRIDGE" up

NETEM="not requested"
netem_args=()
[ -n "$DELAY_MS" ] && netem_args+=(delay "${DELAY_MS}ms")
[ -n "$LOSS_PCT" ] && netem_args+=(loss "${LOSS_PCT}%")

for i in $(seq 1 "$N"); do
  ns="${PREFIX}-$i"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "veth$i" netns "$ns" type veth peer name "sw$i" netns "$SWITCH_NS"
  ip -n "$ns" link set "veth$i" name eth0
  ip -n "$ns" addr add "$SUBNET.$((10 + i))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$SWITCH_NS" link set "sw$i" master "$BRIDGE"
  ip -n "$SWITCH_NS" link set "sw$i" up
  if [ ${#netem_args[@]} -gt 0 ]; then
    if ip netns exec "$ns" tc qdisc add dev eth0 root netem "${netem_args[@]}" 2>/dev/null; then
      NETEM="applied: ${netem_args[*]}"
    else
      NETEM="NOT applied: this kernel has no netem qdisc (sch_netem)"
    fi
  fi
done
log "$N namespaces on $SUBNET.0/24 (netem: $NETEM)"

# --- nodes -------------------------------------------------------------------------
start_node() {  # start_node INDEX [SEED_ADDR]
  local i="$1" seed="${2:-}"
  local home="$STATE/node$i"
  mkdir -p "$home"
  chmod 700 "$home"
  local args=(--home "$home" node start --listen "/ip4/$SUBNET.$((10 + i))/tcp/4001"
              --api 127.0.0.1:8765 --metrics 127.0.0.1:9464)
  [ -n "$seed" ] && args+=(--seed "$seed")
  ip netns exec "${PREFIX}-$i" "$BITTERBOT" "${args[@]}" >"$home/stdout.log" 2>"$home/stderr.log" &
  echo $! >"$home/pid"
  disown $!
}

node_status() {  # node_status INDEX -> JSON on stdout, or nothing
  ip netns exec "${PREFIX}-$1" "$BITTERBOT" --home "$STATE/node$1" node status --json 2>/dev/null || true
}

wait_api() {  # wait_api INDEX TIMEOUT
  local t=0
  while [ "$t" -lt "$(( $2 * 10 ))" ]; do
    [ -n "$(node_status "$1")" ] && return 0
    kill -0 "$(cat "$STATE/node$1/pid")" 2>/dev/null || return 1
    sleep 0.1
    t=$((t + 1))
  done
  return 1
}

started_at=$(date +%s.%N)
SEED_ID="$("$BITTERBOT" --home "$STATE/node1" id)"
SEED_ADDR="/ip4/$SUBNET.11/tcp/4001/p2p/$SEED_ID"
start_node 1
wait_api 1 60 || { log "seed did not start:"; cat "$STATE/node1/stderr.log" >&2; exit 1; }
for i in $(seq 2 "$N"); do
  start_node "$i" "$SEED_ADDR"
done
for i in $(seq 2 "$N"); do
  wait_api "$i" 60 || log "node $i did not start (see $STATE/node$i/stderr.log)"
done

# --- checks ------------------------------------------------------------------------
deadline=$(( $(date +%s) + JOIN_TIMEOUT ))
while :; do
  joined=0
  for i in $(seq 1 "$N"); do
    node_status "$i" >"$STATE/node$i/status.json"
    if "$PYTHON" -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s["connected_peers"] else 1)' \
         "$STATE/node$i/status.json" 2>/dev/null; then
      joined=$((joined + 1))
    fi
  done
  [ "$joined" -eq "$N" ] && break
  [ "$(date +%s)" -ge "$deadline" ] && break
  sleep 1
done
join_s=$(echo "$(date +%s.%N) - $started_at" | bc)
# The namespaces share nothing but the bridge: a TCP connection from the last node to the
# seed's libp2p port proves the path (ping is not installed everywhere).
PING_OK=false
ip netns exec "${PREFIX}-$N" "$PYTHON" -c \
  'import socket,sys; socket.create_connection((sys.argv[1], 4001), timeout=3).close()' \
  "$SUBNET.11" 2>/dev/null && PING_OK=true

"$PYTHON" - "$STATE" "$N" "$joined" "$join_s" "$PING_OK" "$NETEM" <<'PY'
import json, sys
state, n, joined, join_s, ping_ok, netem = sys.argv[1:7]
n, joined = int(n), int(joined)
nodes = []
for i in range(1, n + 1):
    try:
        s = json.load(open(f"{state}/node{i}/status.json"))
    except (OSError, ValueError):
        s = {}
    nodes.append({
        "node": i,
        "address": f"10.77.0.{10 + i}",
        "peer_id": s.get("peer_id"),
        "connected_peers": len(s.get("connected_peers") or []),
        "routing_table_size": s.get("routing_table_size"),
        "network": s.get("network"),
    })
ok = joined == n and ping_ok == "true"
print(json.dumps({
    "nodes": n,
    "nodes_joined": joined,
    "joined_fraction": joined / n,
    "time_to_join_s": round(float(join_s), 2),
    "tcp_to_seed_across_bridge": ping_ok == "true",
    "netem": netem,
    "all_checks_passed": ok,
    "per_node": nodes,
}, indent=2))
sys.exit(0 if ok else 1)
PY
status=$?
if [ "$KEEP" -eq 1 ]; then
  log "left running; enter a node with: ip netns exec ${PREFIX}-2 $BITTERBOT --home $STATE/node2 node status"
  log "remove with: $0 --down"
fi
exit $status
