#!/usr/bin/env bash
# A/B of the LLM gateway's own overhead: two builds of
# `examples/gateway_bench.rs` (e.g. main's and a branch's), run back to back
# and alternated ROUNDS times against the same local provider, so that a
# shared machine's load shifts hit both alike. Same layout as
# bench/gateway.sh (inside `unshare -n`; gateways pinned to core 1,
# provider and load generator on core 0), without the peers.
#
# Usage: bench/gateway_ab.sh BIN_A BIN_B [ROUNDS=3] [SECONDS=3] [C=16] [STREAMS=0]
# BIN_*: paths to gateway_bench binaries (build one with
#   cargo build --release -p airlock-gateway --example gateway_bench
# and copy it aside before changing the code).
# The load generator is BIN_B's (or $LOADGEN): it reports each gateway's
# requests per CPU-second (`pid=` in its targets), which older builds of
# the example do not.
set -euo pipefail
A="$1"; B="$2"; ROUNDS="${3:-3}"; SECS="${4:-3}"; C="${5:-16}"; STREAMS="${6:-0}"
if [ -z "${GATEWAY_AB_INNER:-}" ]; then
  exec env GATEWAY_AB_INNER=1 unshare -n "$0" "$@"
fi
ip link set lo up
W="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
wait_port() {
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
UP=127.0.0.1:18080
taskset -c 0 "$A" upstream "$UP" >"$W/upstream.log" 2>&1 &
PIDS+=($!)
port=18100
T=("direct|http://$UP/v1")
for bin in A B; do
  path="${!bin}"
  for mode in off on; do
    taskset -c 1 "$path" gateway "http://$UP" "127.0.0.1:$port" "$mode" "$W/key-$bin-$mode" >"$W/gw-$bin-$mode.log" 2>&1 &
    PIDS+=($!)
    gpid=$!
    wait_port "$port" || { cat "$W"/*.log; exit 1; }
    for _ in $(seq 50); do [ -s "$W/key-$bin-$mode" ] && break; sleep 0.1; done
    T+=("$bin redaction $mode|http://127.0.0.1:$port/v1|authorization: Bearer $(cat "$W/key-$bin-$mode")|pid=$gpid")
    port=$((port + 1))
  done
done
wait_port 18080
for r in $(seq "$ROUNDS"); do
  echo "== round $r, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ $((r % 2)) -eq 1 ]; then order=(0 1 2 3 4); else order=(0 3 4 1 2); fi
  args=()
  for i in "${order[@]}"; do args+=("${T[$i]}"); done
  taskset -c 0 "${LOADGEN:-$B}" load "$SECS" "$C" "$STREAMS" "${args[@]}" | grep -v '^ratios'
done
