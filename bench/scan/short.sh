#!/usr/bin/env bash
# Instructions per `Scrubber::scan` call on short strings (what the MCP
# gateway does for each JSON string of a tool result): valgrind
# (cachegrind, no cache model) counts of examples/short at 1001 calls minus
# 1 call, divided by 1000, so building the scrubber is left out.
#   bench/scan/short.sh [SHORT_BIN] [KIND ...]
# Kinds: path sentence number uuid empty (default: all).
# Build first: cargo build --release -p airlock-scrub --example short
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/examples/short}"
shift $(( $# > 0 ? 1 : 0 ))
KINDS=("$@")
[ ${#KINDS[@]} -eq 0 ] && KINDS=(path sentence number uuid empty)
ir() { # KIND CALLS
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$BIN" "$1" "$2" 2>&1 >/dev/null | sed -n 's/.*I *refs: *//p' | tr -d ,
}
for k in "${KINDS[@]}"; do
  a=$(ir "$k" 1); b=$(ir "$k" 1001)
  echo "$k: $(( (b - a) / 1000 )) instructions per scan"
done
