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
#   MODES="stdio http"              (which halves to run)
#   HTTP_SERVER=sdk|raw             (the HTTP tool server: the SDK's, or a
#                                    stdlib one with the same tool, JSON answers)
#   GW_WRAP="strace -f -c -o F"     (a prefix for the HTTP half's gateway command,
#                                    to profile it: strace, valgrind --tool=callgrind)
#
# Then the same for an HTTP tool server (the SDK's streamable HTTP server on
# loopback, default settings: event-stream answers): a raw keep-alive HTTP
# client calls it directly and through `airlock mcp serve --listen` (the
# HTTP front: the client code is the same on both sides). At c1 the two
# sides' calls are interleaved (ABBA) in one client, so the server's drift
# hits both alike; then cN (N threads, one connection each, one session)
# per side.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-2000}
C=${2:-16}
MODES=${MODES:-stdio http}
GW_WRAP=${GW_WRAP:-}
HTTP_SERVER=${HTTP_SERVER:-sdk}
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
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT
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
sent, done, t0, inflight, latc = 0, 0, time.perf_counter(), {}, []
while done < calls:
    while sent < calls and len(inflight) < conc:
        inflight[nid] = time.perf_counter(); call(nid); nid += 1; sent += 1
    m = recv()
    if m.get("id") in inflight:
        latc.append(time.perf_counter() - inflight.pop(m["id"])); done += 1
rate = calls / (time.perf_counter() - t0)
latc.sort()
p.stdin.close(); p.wait(timeout=30)
print(json.dumps({"p50": lat[len(lat) // 2] * 1e3, "p99": lat[int(len(lat) * 0.99)] * 1e3, "rate": rate,
                  "p50c": latc[len(latc) // 2] * 1e3, "p99c": latc[int(len(latc) * 0.99)] * 1e3}))
EOF

if [[ " $MODES " == *" stdio "* ]]; then
direct=$("$PY" "$tmp/client.py" "$CALLS" "$C" echo "$PY" "$tmp/srv/server.py")
via=$("$PY" "$tmp/client.py" "$CALLS" "$C" t.echo \
    "$BIN" --data-dir "$tmp/data" --config "$tmp/airlock.toml" mcp serve --agent bench 2>/dev/null)
"$PY" - "$direct" "$via" "$CALLS" "$C" <<'EOF'
import json, sys
d, v = json.loads(sys.argv[1]), json.loads(sys.argv[2])
c = sys.argv[4]
print(f"tools/call over stdio, {sys.argv[3]} calls; c1 and c{c} latency (ms), c{c} throughput (req/s)")
print(f"{'':24}{'c1 p50':>9}{'c1 p99':>9}{'c'+c+' p50':>9}{'c'+c+' p99':>9}{'req/s':>10}")
for name, r in (("direct", d), ("through airlock mcp", v)):
    print(f"{name:24}{r['p50']:9.3f}{r['p99']:9.3f}{r['p50c']:9.3f}{r['p99c']:9.3f}{r['rate']:10.0f}")
print(f"added p50 c1 {v['p50'] - d['p50']:+.3f} ms, c{c} {v['p50c'] - d['p50c']:+.3f} ms; "
      f"added p99 c1 {v['p99'] - d['p99']:+.3f} ms; throughput {v['rate'] / d['rate']:.2f}x direct")
EOF

fi

# --- HTTP tool server -------------------------------------------------------
[[ " $MODES " == *" http "* ]] || exit 0
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do "$PY" -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
PS=$(free_port); PG=$(free_port)
cat > "$tmp/http_server.py" <<'EOF'
import sys
from mcp.server.mcpserver import MCPServer
app = MCPServer("w")

@app.tool(description="Echo text back.")
def echo(text: str) -> str:
    return text

app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
EOF
cat > "$tmp/raw_server.py" <<'EOF'
# The same echo tool as a minimal streamable-HTTP MCP server on the
# standard library (JSON answers, kept-alive HTTP/1.1): the reference for
# HTTP_SERVER=raw, with far less per-call time and jitter than the SDK's
# server, so the gateway's own added time is not lost in the server's.
import json, sys, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOOL = {"name": "echo", "description": "Echo text back.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                        "required": ["text"]}}

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a):
        pass
    def answer(self, code, obj=None, sid=None):
        body = json.dumps(obj).encode() if obj is not None else b""
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        if sid:
            self.send_header("mcp-session-id", sid)
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        m = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        method, i = m.get("method"), m.get("id")
        if i is None:
            return self.answer(202)
        if method == "initialize":
            r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}},
                 "serverInfo": {"name": "w", "version": "1"}}
            return self.answer(200, {"jsonrpc": "2.0", "id": i, "result": r}, uuid.uuid4().hex)
        if method == "tools/list":
            return self.answer(200, {"jsonrpc": "2.0", "id": i, "result": {"tools": [TOOL]}})
        if method == "tools/call":
            t = m["params"]["arguments"]["text"]
            r = {"content": [{"type": "text", "text": t}], "isError": False}
            return self.answer(200, {"jsonrpc": "2.0", "id": i, "result": r})
        self.answer(200, {"jsonrpc": "2.0", "id": i, "error": {"code": -32601, "message": "no such method"}})
    def do_DELETE(self):
        self.answer(200)
    def do_GET(self):
        self.answer(405)

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
if [[ "$HTTP_SERVER" == raw ]]; then
    "$PY" "$tmp/raw_server.py" "$PS" >/dev/null 2>&1 & pids+=($!)
else
    "$PY" "$tmp/http_server.py" "$PS" >/dev/null 2>&1 & pids+=($!)
fi
cat > "$tmp/w.toml" <<EOF
mode = "deny_all"
allow_private = ["127.0.0.0/8"]

[[rules]]
hosts = ["127.0.0.1"]
ports = [$PS]
methods = ["POST", "DELETE"]
action = "allow"
EOF
cat > "$tmp/airlock-http.toml" <<EOF
[[mcp.servers]]
name = "w"
url = "http://127.0.0.1:$PS/mcp"
policy = "$tmp/w.toml"

[[mcp.rules]]
tools = ["w.*"]
action = "allow"
EOF
"$BIN" --data-dir "$tmp/data-http" --config "$tmp/airlock-http.toml" init >/dev/null
$GW_WRAP "$BIN" --data-dir "$tmp/data-http" --config "$tmp/airlock-http.toml" mcp serve \
    --listen "127.0.0.1:$PG" --agent bench >/dev/null 2>&1 & pids+=($!)
wait_port "$PS"; wait_port "$PG"

cat > "$tmp/http_client.py" <<'EOF'
# Direct and through-the-gateway calls interleaved on two kept-alive
# connections (one session each), in ABBA order, so that the Python
# server's drift from second to second hits both sides alike; the added
# latency is also reported as the median of the per-pair differences.
import http.client, json, sys, threading, time

calls, conc = int(sys.argv[1]), int(sys.argv[2])
sides = {"direct": ("echo", int(sys.argv[3])), "via": ("w.echo", int(sys.argv[4]))}

class Session:
    def __init__(self, port):
        self.port, self.sid = port, None
        self.c = http.client.HTTPConnection("127.0.0.1", port)

    def post(self, obj):
        h = {"content-type": "application/json", "accept": "application/json, text/event-stream",
             "mcp-protocol-version": "2025-06-18"}
        if self.sid:
            h["mcp-session-id"] = self.sid
        self.c.request("POST", "/mcp", json.dumps(obj), h)
        r = self.c.getresponse()
        body = r.read()
        self.sid = self.sid or r.getheader("mcp-session-id")
        if r.getheader("content-type", "").startswith("text/event-stream"):
            for line in body.decode().splitlines():
                if line.startswith("data:"):
                    m = json.loads(line[5:])
                    if "id" in m and "method" not in m:
                        return m
            raise SystemExit("no answer in the event stream")
        return json.loads(body) if body else None

    def open(self):
        self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        return self

    def conn(self):
        s = Session(self.port)
        s.sid = self.sid
        return s

def call(s, tool, i):
    t = time.perf_counter()
    m = s.post({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": tool, "arguments": {"text": "hello %d" % i}}})
    d = time.perf_counter() - t
    assert "result" in m, m
    return d

sess = {k: Session(port).open() for k, (_, port) in sides.items()}
for i in range(50):  # warm up
    for k, (tool, _) in sides.items():
        call(sess[k], tool, 10 + i)
lat = {"direct": [], "via": []}
diff = []
for i in range(calls):
    order = ("direct", "via") if i % 2 == 0 else ("via", "direct")
    got = {}
    for k in order:
        got[k] = call(sess[k], sides[k][0], 100 + i)
        lat[k].append(got[k])
    diff.append(got["via"] - got["direct"])
q = lambda xs, f: sorted(xs)[min(len(xs) - 1, int(len(xs) * f))] * 1e3
out = {"added_p50_pairs": q(diff, 0.5)}
per = calls // conc
for k, (tool, _) in sides.items():
    latc = []
    def worker(w, base):
        for i in range(per):
            latc.append(call(w, tool, base + i))
    ts = [threading.Thread(target=worker, args=(sess[k].conn(), 10**6 + j * per)) for j in range(conc)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    rate = per * conc / (time.perf_counter() - t0)
    out[k] = {"p50": q(lat[k], 0.5), "p99": q(lat[k], 0.99), "rate": rate,
              "p50c": q(latc, 0.5), "p99c": q(latc, 0.99)}
print(json.dumps(out))
EOF

r=$("$PY" "$tmp/http_client.py" "$CALLS" "$C" "$PS" "$PG")
"$PY" - "$r" "$CALLS" "$C" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
d, v, c = r["direct"], r["via"], sys.argv[3]
print(f"tools/call over a streamable-HTTP server, {sys.argv[2]} calls each side, c1 interleaved (ABBA); c{c} latency (ms), throughput (req/s)")
print(f"{'':24}{'c1 p50':>9}{'c1 p99':>9}{'c'+c+' p50':>9}{'c'+c+' p99':>9}{'req/s':>10}")
for name, x in (("direct", d), ("through --listen", v)):
    print(f"{name:24}{x['p50']:9.3f}{x['p99']:9.3f}{x['p50c']:9.3f}{x['p99c']:9.3f}{x['rate']:10.0f}")
print(f"added p50 c1 {v['p50'] - d['p50']:+.3f} ms (median of per-pair differences {r['added_p50_pairs']:+.3f} ms), "
      f"c{c} {v['p50c'] - d['p50c']:+.3f} ms; added p99 c1 {v['p99'] - d['p99']:+.3f} ms; "
      f"throughput {v['rate'] / d['rate']:.2f}x direct")
EOF
