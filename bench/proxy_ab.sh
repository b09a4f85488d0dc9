#!/usr/bin/env bash
# A/B of two airlock binaries on the plain-HTTP forward path, in one run:
# direct nginx, BIN_BEFORE, BIN_AFTER and Squid at c1 and c32, each airlock
# row twice, alternating (derived from bench/proxy.sh; same policy, audit on,
# one worker pinned to core 1). No build; no intercepted rows.
# Usage: BIN_BEFORE=/path/airlock BIN_AFTER=/path/airlock bench/proxy_ab.sh [SECS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
secs=${1:-5}
runs=${2:-3}
work=$(mktemp -d /tmp/airlock-bench-proxy.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  # Wait (bounded) for every server to exit before removing its files.
  for _ in $(seq 50); do
    alive=0
    for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"  # nginx's worker (www-data) must be able to read $work/www
P0="taskset -c 0"
P1="taskset -c 1"

bin="${BIN_BEFORE:?set BIN_BEFORE}"; bin_after="${BIN_AFTER:?set BIN_AFTER}"

# --- origin: nginx, 1 KiB, HTTP on 18080 and HTTPS on 18443 (test CA) -------
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
    listen 127.0.0.1:18080;
    listen 127.0.0.1:18443 ssl;
    ssl_protocols TLSv1.2 TLSv1.3;  # nginx 1.22's default lacks TLS 1.3
    ssl_certificate $work/leaf.pem;
    ssl_certificate_key $work/leaf.key;
    root $work/www;
  }
}
CONF
$P0 nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" & pids+=($!)

# --- Airlock: read_public + allow_private for the loopback origin, real audit
"$bin" --data-dir "$work/al" init >/dev/null
# read_public covers only ports 80/443: a rule names the origin's ports.
cat > "$work/policy.toml" <<'POLICY'
mode = "read_public"
allow_private = ["127.0.0.0/8", "::1"]

[[rules]]
hosts = ["127.0.0.1"]
methods = ["GET", "HEAD"]
ports = [18080, 18443]
action = "allow"
POLICY
printf '[proxy]\nupstream_ca_file = "%s"\nintercept_all = true\nmax_connections = 100000\n' "$work/ca.pem" > "$work/airlock.toml"
$P1 "$bin" --data-dir "$work/al" --config "$work/airlock.toml" proxy --workers 1 \
  --listen 127.0.0.1:18090 --policy "$work/policy.toml" --ca-cert-out "$work/airlock-ca.pem" > "$work/airlock.out" & pids+=($!)
"$bin_after" --data-dir "$work/al2" init >/dev/null
$P1 "$bin_after" --data-dir "$work/al2" --config "$work/airlock.toml" proxy --workers 1 \
  --listen 127.0.0.1:18094 --policy "$work/policy.toml" --ca-cert-out "$work/airlock-ca2.pem" > "$work/airlock2.out" & pids+=($!)

# --- Squid (1 worker), tinyproxy, mitmproxy ---------------------------------
mkdir -p "$work/squid"
cat > "$work/squid.conf" <<CONF
http_port 127.0.0.1:18091
workers 1
shutdown_lifetime 0 seconds
http_access allow all
cache deny all
access_log none
cache_log $work/squid/cache.log
pid_filename $work/squid/pid
coredump_dir $work/squid
CONF
$P1 squid -N -f "$work/squid.conf" >"$work/squid.out" 2>&1 & pids+=($!)
sleep 4

# Fail loudly when a wrk run measured errors instead of 1 KiB answers: any
# non-2xx, connect/write errors or timeouts above 1 %, or fewer than 1024
# bytes read per request. (wrk counts a server closing the connection after
# each response, as tinyproxy does, as a read error: those are not counted,
# the byte check covers them.)
check_wrk() { # label output
  local verdict
  verdict=$(echo "$2" | awk '
    /requests in/ { total = $1; b = $(NF-1); sub(/,$/, "", b); n = b + 0
      if (b ~ /KB$/) n *= 1024; else if (b ~ /MB$/) n *= 1048576; else if (b ~ /GB$/) n *= 1073741824
      bytes = n }
    /Non-2xx or 3xx/ { bad += $NF }
    /Socket errors/ { gsub(",", ""); bad += $4 + $8 + $10 }
    END { if (total == 0 || bad * 100 > total || bytes < total * 1024) print "bad " bad " of " total " requests, " bytes " bytes read"; else print "ok" }')
  if [ "$verdict" != ok ]; then
    echo "FAIL $1: $verdict:" >&2
    echo "$2" >&2
    exit 1
  fi
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
wrk_run() { # name conns url proxy(or empty)
  local name=$1 c=$2 url=$3 proxy=$4 out rps=() p99=()
  for _ in $(seq "$runs"); do
    if [ -z "$proxy" ]; then
      out=$($P0 wrk -t1 -c"$c" -d"${secs}s" --latency "$url")
    else
      out=$(TARGET_URL="$url" $P0 wrk -t1 -c"$c" -d"${secs}s" --latency -s bench/proxy/absolute.lua "http://$proxy/")
    fi
    check_wrk "$name c$c" "$out"
    rps+=("$(echo "$out" | awk '/Requests\/sec/ {print $2}')")
    p99+=("$(echo "$out" | awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}')")
  done
  printf '%-12s c%-3s rps median %8.0f  (runs: %s)  p99 ms median %s\n' "$name" "$c" \
    "$(printf '%s\n' "${rps[@]}" | median)" "${rps[*]}" "$(printf '%s\n' "${p99[@]}" | median)"
}

echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus; ${secs}s x ${runs} runs; shared machine"
url=http://127.0.0.1:18080/1k
$P0 wrk -t1 -c32 -d2s "$url" >/dev/null  # warm-up
for c in 1 32; do
  wrk_run direct "$c" "$url" ""
  wrk_run al-before "$c" "$url" 127.0.0.1:18090
  wrk_run al-after "$c" "$url" 127.0.0.1:18094
  wrk_run squid "$c" "$url" 127.0.0.1:18091
  wrk_run al-before "$c" "$url" 127.0.0.1:18090
  wrk_run al-after "$c" "$url" 127.0.0.1:18094
done
