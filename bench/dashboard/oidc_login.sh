#!/usr/bin/env bash
# Cost of one dashboard SSO login end to end, with curl as the browser
# against the real `airlock serve` (TLS, development certificate) and a
# local `oidc-provider-mock` (PyPI) on loopback: /login/oidc (a pending
# login), the provider's authorization form, /login/oidc/callback (code
# exchange, JWKS fetch, RS256 ID token validation, user lookup, session
# insert, audit records). The provider's own time is included; compare
# with bench/dashboard/login.sh (the password login).
# Usage: bench/dashboard/oidc_login.sh [AIRLOCK_BIN] [N] [PYTHON]
set -euo pipefail
bin=${1:-target/release/airlock}
n=${2:-20}
py=${3:-${AIRLOCK_TEST_PYTHON:-$HOME/.cache/airlock-venv/bin/python}}
dir=$(mktemp -d)
trap 'kill "$pid" "$idp" 2>/dev/null || true; rm -rf "$dir"' EXIT
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export AIRLOCK_DATA_DIR=$dir/data
"$bin" init >/dev/null 2>&1
"$bin" tenant create acme >/dev/null
iport=$(free); port=$(free)
"$py" -m oidc_provider_mock -p "$iport" >/dev/null 2>&1 &
idp=$!
cat >"$dir/airlock.toml" <<TOML
[serve]
listen = "127.0.0.1:$port"
[serve.oidc]
issuer = "http://127.0.0.1:$iport"
client_id = "airlock-bench"
client_secret = "bench-secret"
tenant = "acme"
TOML
AIRLOCK_CONFIG=$dir/airlock.toml "$bin" serve >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$iport) 2>/dev/null && break; sleep 0.1; done
base=https://127.0.0.1:$port
c=(curl -s --cacert "$AIRLOCK_DATA_DIR/api-dev-cert.pem")
sso() {
  local jar=$dir/jar loc cb
  rm -f "$jar"
  loc=$("${c[@]}" -c "$jar" -o /dev/null -w '%{redirect_url}' "$base/login/oidc")
  cb=$(curl -s -o /dev/null -w '%{redirect_url}' --data-urlencode "sub=bench@example.com" "$loc")
  "${c[@]}" -b "$jar" -o /dev/null -w '%{http_code}' "$cb"
}
r=$(sso); [ "$r" = 200 ] || { echo "SSO login failed: $r" >&2; exit 1; }
start=$(date +%s%N); for _ in $(seq "$n"); do sso >/dev/null; done; end=$(date +%s%N)
echo "SSO login (3 requests: start, provider form, callback): $(( (end - start) / n / 1000000 )) ms mean over $n (includes the provider and 3 curl starts)"
start=$(date +%s%N); for _ in $(seq "$n"); do "${c[@]}" -o /dev/null -w '%{redirect_url}' "$base/login/oidc" >/dev/null; done; end=$(date +%s%N)
echo "/login/oidc alone (pending login, cached discovery): $(( (end - start) / n / 1000000 )) ms mean over $n"
