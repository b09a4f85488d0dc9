#!/usr/bin/env bash
# The control-plane API under load (wrk, HTTPS, keep-alive), in one run:
#   plain  GET /v1/openapi.json   no token, no database (the baseline handler)
#   get    GET /v1/runs/{id}      one token check + one tenant-scoped query
#   post   POST /v1/teams         one token check + one insert + one durable audit append
# on the embedded SQLite, on PostgreSQL with one `airlock serve` and with
# three replicas on the same database (wrk spreads its connections over
# them). Prints requests/s and p50/p99 per case, and the token check's cost
# as get − plain per request.
#
#   bench/api.sh [SECS] [CONNS]     (defaults 10 8)
#   BIN=path/to/airlock             (default: a release build, made if missing)
#   PG=0                            (skip PostgreSQL; it needs Debian's postgresql)
#
# The servers run on core 1 (taskset), wrk on core 0, when there are two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-8}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 2; }
if [[ -z "${BIN:-}" ]]; then
  cargo build -q --release -p airlock
  BIN="${CARGO_TARGET_DIR:-target}/release/airlock"
fi
BIN=$(realpath "$BIN")
SRV=() LOAD=()
if [[ $(nproc) -ge 2 ]]; then SRV=(taskset -c 1) LOAD=(taskset -c 0); fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n "${AIRLOCK_TEST_PG_STOP:-}" ]]; then eval "$AIRLOCK_TEST_PG_STOP"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A data directory with tenant acme and an admin token ($dir/token).
node() {
  local dir=$1
  AIRLOCK_DATA_DIR=$dir "$BIN" init >/dev/null
}
# start DIR: an `airlock serve` on DIR; its URL in $URL.
start() {
  local dir=$1 port
  port=$(free_port)
  AIRLOCK_DATA_DIR=$dir "${SRV[@]}" "$BIN" serve --listen "127.0.0.1:$port" >"$dir/serve.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$dir/api-dev-cert.pem" "https://127.0.0.1:$port/v1/openapi.json" && break
    sleep 0.1
  done
  URL="https://127.0.0.1:$port"
}

cat > "$tmp/lb.lua" <<'EOF'
-- Spread connections over the servers in SERVERS (space-separated URLs),
-- send the token, and make every POST's team name unique.
local servers, addrs = {}, {}
for u in string.gmatch(os.getenv("SERVERS"), "%S+") do servers[#servers + 1] = u end
local counter, threads = 0, 0
function setup(thread)
  threads = threads + 1
  local host, port = string.match(servers[(threads - 1) % #servers + 1], "https://([^:]+):(%d+)")
  thread.addr = wrk.lookup(host, port)[1]
  thread:set("tid", threads)
end
function init(args)
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
  if os.getenv("METHOD") == "POST" then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  end
end
function request()
  if wrk.method == "POST" then
    counter = counter + 1
    return wrk.format(nil, nil, nil, string.format('{"name":"t%d-%d-%d"}', tid, counter, os.time()))
  end
  return wrk.format()
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
EOF

# load NAME METHOD PATH SERVERS...: one line of figures.
load() {
  local name=$1 method=$2 path=$3; shift 3
  local threads=$#
  [[ $threads -lt 1 ]] && threads=1
  local out
  out=$(SERVERS="$*" TOKEN="$TOKEN" METHOD="$method" "${LOAD[@]}" wrk -t"$threads" -c"$CONNS" -d"${SECS}s" \
    -s "$tmp/lb.lua" "$1$path" 2>&1 | grep '^RESULT' | tail -1)
  read -r _ rps p50 p99 bad err <<<"$out"
  printf '%-28s %8s req/s   p50 %7s ms   p99 %7s ms   non-2xx %s  errors %s\n' "$name" "$rps" "$p50" "$p99" "$bad" "$err"
  eval "RPS_${name//[^a-zA-Z0-9]/_}=$rps"
}

# suite LABEL SERVERS...: the three cases against these servers (data dir $first).
suite() {
  local label=$1; shift
  local first_url=$1
  RUN=$(curl -s --cacert "$CERT" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"command":["true"]}' "$first_url/v1/runs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  load "$label plain" GET /v1/openapi.json "$@"
  load "$label get" GET "/v1/runs/$RUN" "$@"
  load "$label post" POST /v1/teams "$@"
  local plain get
  plain=$(eval echo "\$RPS_${label//[^a-zA-Z0-9]/_}_plain")
  get=$(eval echo "\$RPS_${label//[^a-zA-Z0-9]/_}_get")
  python3 -c "p,g=$plain,$get; print('%-28s %.1f us per request (get - plain), get/plain = %.2f' % ('$label token+query', (1/g-1/p)*1e6, g/p))"
}

echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus; wrk -c$CONNS -d${SECS}s; servers on ${SRV[*]:-any core}, wrk on ${LOAD[*]:-any core}"

# SQLite (the embedded default).
node "$tmp/sqlite"
AIRLOCK_DATA_DIR=$tmp/sqlite "$BIN" tenant create acme >/dev/null
TOKEN=$(AIRLOCK_DATA_DIR=$tmp/sqlite "$BIN" --tenant acme token create --scope admin 2>/dev/null)
CERT=$tmp/sqlite/api-dev-cert.pem
start "$tmp/sqlite"
suite sqlite "$URL"
kill "${pids[@]}" 2>/dev/null || true
pids=()

if [[ "${PG:-1}" == 0 ]]; then exit 0; fi
# PostgreSQL: a throwaway cluster, an owner role that migrates and an app
# role (a member of airlock_app) that serves.
eval "$(scripts/pg-cluster)"
psql -q "$AIRLOCK_TEST_PG_URL" -c "CREATE ROLE airlock_app NOLOGIN" \
  -c "CREATE ROLE bench_owner LOGIN" -c "CREATE ROLE bench_app LOGIN IN ROLE airlock_app" \
  -c "CREATE DATABASE bench OWNER bench_owner" >/dev/null
hostport=${AIRLOCK_TEST_PG_URL#*@}; hostport=${hostport%%/*}
for n in 1 2 3; do
  node "$tmp/pg$n"
  printf '[store]\ndatabase_url = "postgres://bench_app@%s/bench?sslmode=disable"\n' "$hostport" > "$tmp/pg$n/airlock.toml"
  if [[ $n -gt 1 ]]; then cp "$tmp/pg1/keys/audit-signing."* "$tmp/pg$n/keys/"; fi
done
AIRLOCK_DATA_DIR=$tmp/pg1 AIRLOCK_DATABASE_ADMIN_URL="postgres://bench_owner@$hostport/bench?sslmode=disable" "$BIN" db migrate >/dev/null
AIRLOCK_DATA_DIR=$tmp/pg1 "$BIN" tenant create acme >/dev/null
TOKEN=$(AIRLOCK_DATA_DIR=$tmp/pg1 "$BIN" --tenant acme token create --scope admin 2>/dev/null)
urls=()
for n in 1 2 3; do start "$tmp/pg$n"; urls+=("$URL"); done
CERT=$tmp/pg1/api-dev-cert.pem
suite pg-1 "${urls[0]}"
suite pg-3 "${urls[@]}"
