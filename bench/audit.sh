#!/usr/bin/env bash
# Audit log benchmark: durable appends/s (1 producer, 32 producers, 32
# pipelined producers), p50/p99 acknowledgement latency and verify rate, side
# by side in the same run with a raw fdatasync loop and a plain SQLite
# one-row-per-transaction loop on the same disk.
#
# Usage: bench/audit.sh [--secs N] [--runs N] [--window N] [--cases a,b,...] [--dir DIR]
#   defaults: 10 s per run, 3 runs per case, window 16, dir target/bench-audit
#   cases: fdatasync fdatasync-append sqlite audit-1 audit-32 audit-32p scan hash verify
# The log written by audit-32p is what `verify` and `scan` read.
#
# Everything runs in one process (producers, writer thread, comparison
# loops); set PIN="taskset -c 1" to confine it to one core.
set -euo pipefail
cd "$(dirname "$0")/.."
default_cases=fdatasync,fdatasync-append,sqlite,audit-1,audit-32,audit-32p,scan,verify
args=("$@")
if ! printf '%s\n' "${args[@]:-}" | grep -q -- '--cases'; then
  args+=(--cases "$default_cases")
fi
cargo bench -q -p airlock-audit --bench audit --no-run
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus; disk: $(df -h --output=source,fstype target | tail -1)"
${PIN:-} cargo bench -q -p airlock-audit --bench audit -- "${args[@]}"
