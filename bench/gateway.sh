#!/usr/bin/env bash
# LLM gateway overhead, side by side with its peers, in the same run and
# against the same local provider (airlock-testkit's LlmUpstream, real
# OpenAI wire format incl. SSE): direct; Airlock with PII redaction off
# (secrets still masked) and on; LiteLLM proxy; Portkey gateway.
# Each system under test runs alone on core 1, one worker; the load
# generator and the provider share core 0 (see /work/shared/BENCH.md).
# Everything runs in a private network namespace (Portkey binds all
# interfaces; no peer can reach the outside).
#
# Reports p50/p99 at concurrency 1 and req/s at concurrency C for a
# non-streamed chat completion, and time to first byte + total time for a
# 200-event SSE answer, then the added figures and the ratios.
#
# Usage: bench/gateway.sh [SECONDS=5] [C=16] [STREAMS=10]
# Peers are optional: a missing one is skipped with how to install it.
#   LITELLM=/path/to/litellm  (default: `litellm` on PATH, or /work/venv-litellm/bin/litellm)
#     pip install 'litellm[proxy]==1.108.7'
#   PORTKEY=/path/to/@portkey-ai/gateway/build/start-server.js
#     (default: /work/portkey/node_modules/@portkey-ai/gateway/build/start-server.js)
#     npm install @portkey-ai/gateway@1.15.2
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-5}"
C="${2:-16}"
STREAMS="${3:-10}"

if [ -z "${GATEWAY_BENCH_INNER:-}" ]; then
  cargo build -q --release -p airlock-gateway --example gateway_bench
  exec env GATEWAY_BENCH_INNER=1 unshare -n "$0" "$@"
fi

ip link set lo up
T="${CARGO_TARGET_DIR:-target}"
BIN="$T/release/examples/gateway_bench"
W="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

UP=127.0.0.1:18080
wait_port() { # port, seconds
  for _ in $(seq "$(( $2 * 10 ))"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

LITELLM="${LITELLM:-$(command -v litellm || echo /work/venv-litellm/bin/litellm)}"
PORTKEY="${PORTKEY:-/work/portkey/node_modules/@portkey-ai/gateway/build/start-server.js}"
TARGETS=("direct|http://$UP/v1")

# Peers first: LiteLLM takes up to a minute to start on a loaded machine.
if [ -x "$LITELLM" ]; then
  cat >"$W/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://$UP/v1
      api_key: sk-local
YAML
  LITELLM_MASTER_KEY=sk-bench LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
    taskset -c 1 "$LITELLM" --config "$W/litellm.yaml" --host 127.0.0.1 --port 14000 --num_workers 1 \
    >"$W/litellm.log" 2>&1 &
  PIDS+=($!)
  HAVE_LITELLM=1
else
  echo "skipping LiteLLM: not found (pip install 'litellm[proxy]==1.108.7', or set LITELLM=)"
fi
if [ -f "$PORTKEY" ] && command -v node >/dev/null; then
  taskset -c 1 node "$PORTKEY" --port=18787 >"$W/portkey.log" 2>&1 &
  PIDS+=($!)
  PORTKEY_PID=$!
  HAVE_PORTKEY=1
else
  echo "skipping Portkey: not found (npm install @portkey-ai/gateway@1.15.2, or set PORTKEY=)"
fi

taskset -c 0 "$BIN" upstream "$UP" >"$W/upstream.log" 2>&1 &
PIDS+=($!)
taskset -c 1 "$BIN" gateway "http://$UP" 127.0.0.1:18100 off "$W/key-off" >"$W/gw-off.log" 2>&1 &
PIDS+=($!)
PID_OFF=$!
taskset -c 1 "$BIN" gateway "http://$UP" 127.0.0.1:18101 on "$W/key-on" >"$W/gw-on.log" 2>&1 &
PIDS+=($!)
PID_ON=$!
wait_port 18080 30 && wait_port 18100 30 && wait_port 18101 30 || { cat "$W"/*.log; exit 1; }
TARGETS+=("airlock redaction off|http://127.0.0.1:18100/v1|authorization: Bearer $(cat "$W/key-off")|pid=$PID_OFF")
TARGETS+=("airlock redaction on|http://127.0.0.1:18101/v1|authorization: Bearer $(cat "$W/key-on")|pid=$PID_ON")
if [ -n "${HAVE_LITELLM:-}" ]; then
  if wait_port 14000 180; then
    TARGETS+=("litellm|http://127.0.0.1:14000/v1|authorization: Bearer sk-bench")
  else
    echo "LiteLLM did not start:"; tail -20 "$W/litellm.log"
  fi
fi
if [ -n "${HAVE_PORTKEY:-}" ]; then
  if wait_port 18787 60; then
    TARGETS+=("portkey|http://127.0.0.1:18787/v1|x-portkey-provider: openai|x-portkey-custom-host: http://$UP/v1|authorization: Bearer sk-local|pid=$PORTKEY_PID")
  else
    echo "Portkey did not start:"; tail -20 "$W/portkey.log"
  fi
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
taskset -c 0 "$BIN" load "$SECS" "$C" "$STREAMS" "${TARGETS[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
