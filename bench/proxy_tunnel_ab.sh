#!/usr/bin/env bash
# A/B of two airlock binaries on one reused intercepted tunnel (HTTP/1.1 over
# TLS 1.3 inside CONNECT, 1 KiB GETs from nginx), alternating rounds; same
# origin, policy and durable audit as bench/proxy_cost.sh, one worker pinned
# to core 1, nginx and the client (tls_load) on core 0.
# Usage: BIN_BEFORE=… BIN_AFTER=… TLS_LOAD=…/examples/tls_load bench/proxy_tunnel_ab.sh [SECS] [ROUNDS] [CONNS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}; rounds=${2:-3}; conns=${3:-1}
before="${BIN_BEFORE:?}"; after="${BIN_AFTER:?}"; tls_load="${TLS_LOAD:?}"
work=$(mktemp -d /tmp/airlock-bench-tun.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
chmod 755 "$work"
P0="taskset -c 0"; P1="taskset -c 1"
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
    listen 127.0.0.1:48443 ssl;
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
ports = [48443]
action = "allow"
POLICY
printf '[proxy]\nupstream_ca_file = "%s"\nintercept_all = true\nmax_connections = 100000\n' "$work/ca.pem" > "$work/airlock.toml"
port=48090
run_one() { # bin label
  port=$((port + 1))
  rm -rf "$work/al"
  "$1" --data-dir "$work/al" init >/dev/null
  $P1 "$1" --data-dir "$work/al" --config "$work/airlock.toml" proxy --workers 1 --listen "127.0.0.1:$port" \
    --policy "$work/policy.toml" --ca-cert-out "$work/ca-$port.pem" > /dev/null 2>"$work/proxy.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do [ -s "$work/ca-$port.pem" ] && curl -s -o /dev/null -x "127.0.0.1:$port" http://127.0.0.1:1/ ; [ -s "$work/ca-$port.pem" ] && break; sleep 0.1; done
  sleep 0.3
  $P0 "$tls_load" --url https://127.0.0.1:48443/1k --proxy "127.0.0.1:$port" --ca "$work/ca-$port.pem" \
    --mode reuse --conns "$conns" --secs 1 >/dev/null
  local out
  out=$($P0 "$tls_load" --url https://127.0.0.1:48443/1k --proxy "127.0.0.1:$port" --ca "$work/ca-$port.pem" \
    --mode reuse --conns "$conns" --secs "$secs")
  printf '%-8s %s\n' "$2" "$out"
  kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg); reused tunnel, $conns conn(s), ${secs}s x $rounds rounds"
for _ in $(seq "$rounds"); do run_one "$before" before; run_one "$after" after; done
