#!/bin/sh
# Per-request overhead of credential injection on the intercepted path:
# handle injected vs no handle in the same `airlock run --secret`, plus a run
# without --secret. Sandboxed curl, Python HTTPS origin on 127.0.0.2, release build.
# Usage: bench/credentials.sh   (from the repository root)
set -e
cargo test --release -p airlock --test credentials_e2e -- --ignored --nocapture bench_injection_overhead
