#!/usr/bin/env bash
# Cost of a dashboard login (one Argon2id verification, m=19 MiB, t=2, p=1)
# and of one authenticated page (session lookup + a store read), measured
# end to end with curl against the real `airlock serve` on loopback (TLS,
# development certificate). Usage: bench/dashboard/login.sh [AIRLOCK_BIN] [N]
set -euo pipefail
bin=${1:-target/release/airlock}
n=${2:-20}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
export AIRLOCK_DATA_DIR=$dir/data
"$bin" init >/dev/null 2>&1
"$bin" tenant create acme >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --tenant acme serve --init-admin --listen "127.0.0.1:$port" >"$dir/out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q '^password:' "$dir/out" 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
pw=$(sed -n 's/^password: //p' "$dir/out")
base=https://127.0.0.1:$port
c=(curl -s --cacert "$AIRLOCK_DATA_DIR/api-dev-cert.pem" -o /dev/null)
login() { "${c[@]}" -D - --data-urlencode "username=admin@acme" --data-urlencode "password=$pw" "$base/login" | sed -n 's/^set-cookie: __Host-airlock_session=\([^;]*\).*/\1/p'; }
cookie=$(login)
start=$(date +%s%N); for _ in $(seq "$n"); do login >/dev/null; done; end=$(date +%s%N)
echo "login (Argon2id verify + session insert + 1 audit record): $(( (end - start) / n / 1000000 )) ms mean over $n"
start=$(date +%s%N); for _ in $(seq "$n"); do "${c[@]}" -H "Cookie: __Host-airlock_session=$cookie" "$base/password"; done; end=$(date +%s%N)
echo "page behind a session (/password): $(( (end - start) / n / 1000000 )) ms mean over $n (includes curl start and the TLS handshake)"
