#!/usr/bin/env bash
# Where the proxy's CPU goes on the plain-HTTP forward path, policy and
# durable audit on: `perf stat` (task-clock, context switches
# per request, per thread group) and `perf record --call-graph dwarf` on
# `airlock proxy --workers 1` pinned to core 1 under `wrk -t1 -cC` (wrk and
# nginx on core 0). Prints per-request counters, the split by thread
# (worker vs audit writer) and the split by component (bench/proxy/buckets.py:
# each sample goes to the innermost frame naming a component). perf here has
# no hardware counters (VM): samples are cpu-clock; instructions per request
# come from callgrind (bench/proxy_cost.sh).
# Same origin, policy and audit as bench/proxy_cost.sh.
#
# Usage: BIN=/path/airlock bench/proxy_profile.sh [SECS] [CONNS] [OUT_DIR]
#   OUT_DIR keeps perf.data for `perf report -i OUT_DIR/perf.data`.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
conns=${2:-32}
bin="${BIN:?set BIN to a release airlock binary}"
work=$(mktemp -d /tmp/airlock-bench-prof.XXXXXX)
out=${3:-$work}
mkdir -p "$out"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
chmod 755 "$work"
P0="taskset -c 0"
P1="taskset -c 1"
mkdir -p "$work/www" "$work/nginx"
head -c 1024 /dev/zero | tr '\0' 'a' > "$work/www/1k"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:38080; root $work/www; }
}
CONF
$P0 nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" & pids+=($!)
cat > "$work/policy.toml" <<'POLICY'
mode = "read_public"
allow_private = ["127.0.0.0/8", "::1"]

[[rules]]
hosts = ["127.0.0.1"]
methods = ["GET", "HEAD"]
ports = [38080]
action = "allow"
POLICY
printf '[proxy]\nmax_connections = 100000\n' > "$work/airlock.toml"
url=http://127.0.0.1:38080/1k
port=38090
"$bin" --data-dir "$work/al" init >/dev/null
$P1 "$bin" --data-dir "$work/al" --config "$work/airlock.toml" proxy --workers 1 \
  --listen "127.0.0.1:$port" --policy "$work/policy.toml" > "$work/proxy.out" 2>"$work/proxy.err" &
proxy_pid=$!; pids+=("$proxy_pid")
for _ in $(seq 600); do curl -s -o /dev/null -x "127.0.0.1:$port" "$url" && break; sleep 0.1; done
cat > "$work/abs.lua" <<'LUA'
local target = os.getenv("TARGET_URL")
request = function() return wrk.format("GET", target) end
LUA
wrkrun() { TARGET_URL="$url" $P0 wrk -t1 -c"$conns" -d"$1"s -s "$work/abs.lua" "http://127.0.0.1:$port/"; }
reqs() { awk '/requests in/ {print $1}'; }
wrkrun 2 >/dev/null # warm-up
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg); c$conns, ${secs}s"

# 1. counters per request (every thread of the proxy)
perf stat -e task-clock,context-switches,cpu-migrations -p "$proxy_pid" -o "$work/stat" -- sleep "$secs" &
st=$!
n=$(wrkrun "$secs" | tee "$work/wrk1" | reqs)
wait "$st" || true
echo "requests: $n ($(awk '/Requests\/sec/ {print $2}' "$work/wrk1") req/s)"
awk -v n="$n" '
  /task-clock/ {gsub(",", "", $1); printf "  task-clock   %8.2f us/req\n", $1 * 1000 / n}
  /context-switches/ {gsub(",", "", $1); printf "  ctx switches %8.3f /req\n", $1 / n}' "$work/stat"

# 2. heap allocations per request: uprobes on libc's malloc/calloc/realloc
# (exact counts; the probes slow the proxy, so the rate here means nothing).
libc=$(ldd "$bin" | awk '/libc.so.6/ {print $3}')
for f in malloc calloc realloc; do perf probe -q -x "$libc" --add "$f" 2>/dev/null || true; done
perf stat -e 'probe_libc:malloc,probe_libc:calloc,probe_libc:realloc' -p "$proxy_pid" -o "$work/stat2" -- sleep 3 &
st=$!
n2=$(wrkrun 3 | reqs)
wait "$st" || true
awk -v n="$n2" '/probe_libc/ {gsub(",", "", $1); t += $1; printf "  %-20s %6.1f /req\n", $2, $1 / n} END {printf "  heap allocations     %6.1f /req (%d requests)\n", t / n, n}' "$work/stat2"
# who allocates: the malloc calls' call graphs, split like the CPU samples
perf record -q -e probe_libc:malloc --call-graph dwarf,16384 -p "$proxy_pid" -o "$out/malloc.data" -- sleep 1 2>/dev/null &
pr=$!
wrkrun 1 >/dev/null
wait "$pr" || true
echo "malloc calls by component:"
perf script -i "$out/malloc.data" --no-inline -F comm,ip,sym 2>/dev/null | python3 bench/proxy/buckets.py --callers | sed -n '/%  /p' | grep -v "allocator leaf"
for f in malloc calloc realloc; do perf probe -q -d "probe_libc:$f" 2>/dev/null || true; done

# 3. call graph
perf record -q -F 1999 --call-graph dwarf,16384 -p "$proxy_pid" -o "$out/perf.data" -- sleep "$secs" 2>/dev/null &
pr=$!
wrkrun "$secs" >/dev/null
wait "$pr" || true
perf script -i "$out/perf.data" --no-inline -F comm,ip,sym 2>/dev/null | python3 bench/proxy/buckets.py
perf report -i "$out/perf.data" --no-inline --no-children --sort dso,symbol --stdio -g none --percent-limit 0.7 2>/dev/null \
  | grep -E '^ +[0-9]' | sed 's/ \+$//' > "$out/self.txt" || true
echo "top self (function's own samples):"; head -25 "$out/self.txt" | cut -c1-150 | sed 's/^/  /'
