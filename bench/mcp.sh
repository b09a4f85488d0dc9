#!/usr/bin/env bash
# Added latency per MCP `tools/call` through `airlock mcp serve` (stdio),
# against the same tool server spoken to directly over stdio, in the same
# run. The server is the official Python SDK's `MCPServer`; the client is a
# raw newline-delimited JSON-RPC client (no SDK overhead on the measured
# path), at concurrency 1 (latency) and C (requests in flight on the one
# session: throughput). Through Airlock, every call passes the rules, the
# pinned definition, the input schema, the scrubber on the result and an
# audit record; the server runs in its own sandbox.
#
#   bench/mcp.sh [CALLS] [C]        (defaults 2000 16)
#   BIN=path/to/airlock             (default: a release build, made if missing)
#   AIRLOCK_TEST_PYTHON=python      (a Python with `mcp`; default: scripts/test's venv)
#
# HTTP tool servers (the issue's ≤ 0.5 ms target) are not covered yet.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-2000}
C=${2:-16}
PY=${AIRLOCK_TEST_PYTHON:-$HOME/.cache/airlock-venv/bin/python}
if ! "$PY" -c 'import mcp' 2>/dev/null; then
    echo "needs a Python with the mcp package: scripts/test makes one (or set AIRLOCK_TEST_PYTHON)" >&2
    exit 2
fi
if [[ -z "${BIN:-}" ]]; then
    cargo build -q --release -p airlock
    BIN="${CARGO_TARGET_DIR:-target}/release/airlock"
fi
BIN=$(realpath "$BIN")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
mkdir -p "$tmp/srv"
cp -a "$site" "$tmp/srv/site-packages"
cat > "$tmp/srv/server.py" <<'EOF'
import sys
sys.path.insert(0, "/workspace/site-packages")
from mcp.server.mcpserver import MCPServer
app = MCPServer("t")

@app.tool(description="Echo text back.")
def echo(text: str) -> str:
    return text

app.run()
EOF
cat > "$tmp/airlock.toml" <<EOF
[[mcp.servers]]
name = "t"
command = ["python3", "/workspace/server.py"]
workspace = "$tmp/srv"

[[mcp.rules]]
tools = ["t.*"]
action = "allow"
EOF
"$BIN" --data-dir "$tmp/data" --config "$tmp/airlock.toml" init >/dev/null

cat > "$tmp/client.py" <<'EOF'
import json, subprocess, sys, time, statistics

calls, conc, tool = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
argv = sys.argv[4:]
p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
buf = b""

def send(obj):
    p.stdin.write((json.dumps(obj) + "\n").encode())

def recv():
    global buf
    while b"\n" not in buf:
        chunk = p.stdout.read1(65536) if hasattr(p.stdout, "read1") else p.stdout.read(65536)
        if not chunk:
            raise SystemExit("server closed: " + " ".join(argv))
        buf += chunk
    line, buf = buf.split(b"\n", 1)
    return json.loads(line)

def until(i):
    while True:
        m = recv()
        if m.get("id") == i:
            return m

send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"}}})
until(0)
send({"jsonrpc": "2.0", "method": "notifications/initialized"})
send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
until(1)

def call(i):
    send({"jsonrpc": "2.0", "id": i, "method": "tools/call",
          "params": {"name": tool, "arguments": {"text": "hello %d" % i}}})

nid = 10
for _ in range(50):  # warm up (first call starts the sandboxed server)
    call(nid); m = until(nid); nid += 1
    assert "result" in m, m
lat = []
for _ in range(calls):
    t = time.perf_counter(); call(nid); until(nid); lat.append(time.perf_counter() - t); nid += 1
lat.sort()
sent, done, t0, inflight = 0, 0, time.perf_counter(), {}
while done < calls:
    while sent < calls and len(inflight) < conc:
        inflight[nid] = time.perf_counter(); call(nid); nid += 1; sent += 1
    m = recv()
    if m.get("id") in inflight:
        del inflight[m["id"]]; done += 1
rate = calls / (time.perf_counter() - t0)
p.stdin.close(); p.wait(timeout=30)
print(json.dumps({"p50": lat[len(lat) // 2] * 1e3, "p99": lat[int(len(lat) * 0.99)] * 1e3, "rate": rate}))
EOF

direct=$("$PY" "$tmp/client.py" "$CALLS" "$C" echo "$PY" "$tmp/srv/server.py")
via=$("$PY" "$tmp/client.py" "$CALLS" "$C" t.echo \
    "$BIN" --data-dir "$tmp/data" --config "$tmp/airlock.toml" mcp serve --agent bench 2>/dev/null)
"$PY" - "$direct" "$via" "$CALLS" "$C" <<'EOF'
import json, sys
d, v = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"tools/call over stdio, {sys.argv[3]} calls; c1 latency, c{sys.argv[4]} throughput (ms, req/s)")
print(f"{'':24}{'p50':>9}{'p99':>9}{'req/s':>10}")
for name, r in (("direct", d), ("through airlock mcp", v)):
    print(f"{name:24}{r['p50']:9.3f}{r['p99']:9.3f}{r['rate']:10.0f}")
print(f"added p50 {v['p50'] - d['p50']:+.3f} ms, added p99 {v['p99'] - d['p99']:+.3f} ms, "
      f"throughput {v['rate'] / d['rate']:.2f}x direct")
EOF
