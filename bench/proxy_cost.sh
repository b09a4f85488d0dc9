#!/usr/bin/env bash
# Load-independent cost per request of the proxy, for A/B work on a shared
# machine where wall-clock rates drift: user-space instructions (valgrind
# callgrind, every thread of the proxy: worker and audit writer), heap
# allocations (calls to malloc/calloc/realloc counted by callgrind) and
# system calls (strace -c -f), per request, on the plain-HTTP forward path at
# c1 and c32 and on one reused intercepted tunnel. Same origin, policy and
# durable audit log as bench/proxy_ab.sh.
#
# Counters are zeroed after a warm-up and read after N requests (give or take
# the few requests it takes the proxy to notice), so start-up (CA generation,
# policy load) is not counted; the intercepted row includes
# its one tunnel set-up (CONNECT, TLS handshake) spread over its requests.
# Caveat: under valgrind the proxy runs ~50x slower, so the audit writer's
# batches (2 ms linger) hold fewer records than at full speed and its share
# here is an upper bound.
#
# Usage: BIN=/path/airlock [TLS_LOAD=/path/tls_load] bench/proxy_cost.sh [N] [TOP]
#   N: requests per measured row (default 3000); TOP: callgrind functions
#   listed per row (default 0).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3000}
top=${2:-0}
bin="${BIN:?set BIN to a release airlock binary}"
tls_load=${TLS_LOAD:-}
work=$(mktemp -d /tmp/airlock-bench-cost.XXXXXX)
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

# --- origin: nginx, 1 KiB over HTTP (28080) and HTTPS (28443, test CA) -----
mkdir -p "$work/www" "$work/nginx"
head -c 1024 /dev/zero | tr '\0' 'a' > "$work/www/1k"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$work/ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/ext" -out "$work/leaf.pem" 2>/dev/null
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:28080;
    listen 127.0.0.1:28443 ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $work/leaf.pem;
    ssl_certificate_key $work/leaf.key;
    root $work/www;
  }
}
CONF
$P0 nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" & pids+=($!)

cat > "$work/policy.toml" <<'POLICY'
mode = "read_public"
allow_private = ["127.0.0.0/8", "::1"]

[[rules]]
hosts = ["127.0.0.1"]
methods = ["GET", "HEAD"]
ports = [28080, 28443]
action = "allow"
POLICY
printf '[proxy]\nupstream_ca_file = "%s"\nintercept_all = true\nmax_connections = 100000\n' "$work/ca.pem" > "$work/airlock.toml"

# wrk stops its thread after exactly $COUNT responses.
cat > "$work/count.lua" <<'LUA'
local target = os.getenv("TARGET_URL")
local limit = tonumber(os.getenv("COUNT"))
local seen = 0
request = function() return wrk.format("GET", target) end
response = function(status, headers, body)
  seen = seen + 1
  if seen >= limit then wrk.thread:stop() end
end
LUA
url=http://127.0.0.1:28080/1k
port=28090
load() { # conns count -> prints the number of completed requests
  local out
  out=$(TARGET_URL="$url" COUNT="$2" $P0 wrk -t1 -c"$1" -d600s -s "$work/count.lua" "http://127.0.0.1:$port/")
  if echo "$out" | grep -q "Non-2xx"; then echo "FAIL: non-2xx answers: $out" >&2; exit 1; fi
  echo "$out" | awk '/requests in/ {print $1}'
}
tls() { # count-ish (seconds) -> prints the number of completed requests
  local out
  out=$($P0 "$tls_load" --url https://127.0.0.1:28443/1k --proxy "127.0.0.1:$port" \
    --ca "$work/airlock-ca-$port.pem" --mode reuse --secs "$1")
  echo "$out" | sed -n 's/.*(\([0-9]*\) requests.*/\1/p'
}
start_proxy() { # prefix... ; sets $proxy_pid
  port=$((port + 1))
  rm -rf "$work/al"
  "$bin" --data-dir "$work/al" init >/dev/null
  "$@" "$bin" --data-dir "$work/al" --config "$work/airlock.toml" proxy --workers 1 \
    --listen "127.0.0.1:$port" --policy "$work/policy.toml" --ca-cert-out "$work/airlock-ca-$port.pem" \
    > "$work/proxy.out" 2>"$work/proxy.err" &
  proxy_pid=$!
  pids+=("$proxy_pid")
  for _ in $(seq 600); do
    curl -s -o /dev/null -x "127.0.0.1:$port" "$url" && return 0
    sleep 0.1
  done
  echo "FAIL: the proxy did not start" >&2; cat "$work/proxy.err" >&2; exit 1
}
stop_proxy() {
  kill -INT "$proxy_pid" 2>/dev/null || true
  wait "$proxy_pid" 2>/dev/null || true
}
# The pid of the valgrind'ed process is $proxy_pid itself (valgrind execs in place).

echo "# $(date -u +%FT%TZ) $(uname -r); $("$bin" --version 2>/dev/null || echo airlock); N=$n"
printf '%-16s %12s %10s %10s\n' row "instr/req" "allocs/req" "syscalls/req"

row() { # name kind(c1|c32|tls)
  local name=$1 kind=$2 done_n ir allocs sys
  local run
  case $kind in
    c1) run() { load 1 "$1"; } ;;
    c32) run() { load 32 "$1"; } ;;
    tls) run() { tls "$1"; } ;;
  esac
  # the amount of work for one measured row: N requests, or seconds for tls
  local amount=$n warm=200
  if [ "$kind" = tls ]; then amount=$(awk -v n="$n" 'BEGIN {print n / 150}'); warm=1; fi

  # instructions and allocations: callgrind, zeroed after the warm-up
  start_proxy valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --dump-instr=no \
    --collect-atstart=yes --separate-threads=no
  run "$warm" >/dev/null
  # callgrind_control is only served while the proxy runs code: ask, then
  # make it run (the first few measured requests, or one more request).
  callgrind_control -z "$proxy_pid" >/dev/null & local z=$!
  done_n=$(run "$amount")
  wait "$z"
  callgrind_control -d "$name" "$proxy_pid" >/dev/null & local d=$!
  sleep 0.5
  curl -s -o /dev/null -x "127.0.0.1:$port" "$url" || true
  wait "$d"
  stop_proxy
  local dump
  dump=$(ls "$work"/cg."$proxy_pid".* | grep -v "\.$proxy_pid$" | head -1)
  ir=$(awk '/^summary:/ {print $2}' "$dump")
  allocs=$(awk '
    /^cfn=/ { s = $0; sub(/^cfn=/, "", s); id = s; sub(/ .*/, "", id); nm = s; sub(/^\([0-9]+\) ?/, "", nm)
              if (nm != "") names[id] = nm; cur = names[id]; next }
    /^calls=/ { if (cur == "malloc" || cur == "calloc" || cur == "realloc") { split($0, a, /[= ]/); total += a[2] }; cur = ""; next }
    END { print total + 0 }' "$dump")
  if [ "$top" -gt 0 ]; then
    callgrind_annotate --threshold=100 "$dump" 2>/dev/null | sed -n "/^ *Ir .*file:function/,\$p" \
      | head -n $((top + 2)) > "$work/top-$name"
  fi

  # system calls: strace attached after the warm-up
  start_proxy $P1
  run "$warm" >/dev/null
  strace -c -f -p "$proxy_pid" -o "$work/strace-$name" 2>/dev/null & local st=$!
  sleep 1
  local sn
  sn=$(run "$amount")
  sleep 0.3
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  stop_proxy
  sys=$(awk '$NF=="total" {print $4}' "$work/strace-$name")
  printf '%-16s %12.0f %10.1f %10.2f   (%s and %s requests)\n' "$name" \
    "$(awk -v a="$ir" -v b="$done_n" 'BEGIN {print a / b}')" \
    "$(awk -v a="$allocs" -v b="$done_n" 'BEGIN {print a / b}')" \
    "$(awk -v a="$sys" -v b="$sn" 'BEGIN {print a / b}')" "$done_n" "$sn"
  if [ "$top" -gt 0 ]; then
    sed 's/^/    /' "$work/top-$name"
    echo "    syscalls:"; awk -v n="$sn" '$1 ~ /^[0-9.]+$/ && $NF != "total" {printf "      %-16s %6.2f\n", $NF, $4 / n}' "$work/strace-$name" | sort -k2 -nr | head -8
  fi
}

row plain-c1 c1
row plain-c32 c32
if [ -n "$tls_load" ]; then row tunnel-reused tls; fi
