#!/usr/bin/env python3
"""HTTPS-through-proxy load client for bench/proxy.sh.

Usage: tls_client.py PROXY URL CA SECONDS MODE
  MODE reuse: one CONNECT tunnel (one requests.Session), many requests.
  MODE new:   a new tunnel (new TCP + CONNECT + TLS handshake) per request.
Prints: requests/s and p50/p99 latency in ms. One Python thread: the client
is itself a bottleneck, which is stated next to the figures.
"""
import ssl, sys, time, socket, http.client

proxy, url, ca, secs, mode = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
phost, pport = proxy.split(":")
rest = url.split("://", 1)[1]
hostport, path = (rest.split("/", 1) + [""])[:2]
host, port = hostport.split(":")
path = "/" + path
ctx = ssl.create_default_context(cafile=ca)

def connect():
    c = http.client.HTTPSConnection(phost, int(pport), context=ctx, timeout=10)
    c.set_tunnel(host, int(port))
    return c

lat = []
conn = connect()
end = time.monotonic() + secs
errors = 0
while time.monotonic() < end:
    t0 = time.perf_counter()
    try:
        if mode == "new":
            conn = connect()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            errors += 1
        if mode == "new":
            conn.close()
    except Exception as e:
        if errors == 0:
            print(f"first error: {e!r}", file=sys.stderr)
        errors += 1
        conn = connect()
    lat.append(time.perf_counter() - t0)
lat.sort()
n = len(lat)
print(f"{n / secs:.0f} req/s  p50 {lat[n // 2] * 1e3:.2f} ms  p99 {lat[int(n * 0.99)] * 1e3:.2f} ms  errors {errors}")
