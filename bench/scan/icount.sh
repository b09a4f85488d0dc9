#!/usr/bin/env bash
# Load-independent scrubber cost: valgrind (cachegrind, no cache model)
# instruction counts of examples/speed over a slice of the gen.py corpus,
# per repeat = (Ir at 3 repeats - Ir at 1 repeat) / 2, so rule loading and
# automaton construction are left out.
#   bench/scan/icount.sh [SPEED_BIN] [SLICE_MB] [all|secrets|pii ...]
# Defaults: target/release/examples/speed, 2 MB, all secrets pii.
# Build first: cargo build --release -p airlock-scrub --example speed
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/examples/speed}"
MB="${2:-2}"
shift $(( $# > 2 ? 2 : $# ))
SETS=("$@")
[ ${#SETS[@]} -eq 0 ] && SETS=(all secrets pii)
WORK="${ICOUNT_DIR:-/tmp/airlock-scrub-icount}"
mkdir -p "$WORK"
[ -s "$WORK/gen/mixed.txt" ] || python3 bench/scan/gen.py "$WORK/gen" 32 >/dev/null
head -c "$((MB * 1000000))" "$WORK/gen/mixed.txt" > "$WORK/slice.txt"
ir() { # SET REPS
  SPEED_ONLY="$1" valgrind --tool=cachegrind --cache-sim=no \
    --cachegrind-out-file=/dev/null "$BIN" "$WORK/slice.txt" "$2" 2>&1 >/dev/null |
    sed -n 's/.*I *refs: *//p' | tr -d ,
}
for s in "${SETS[@]}"; do
  a=$(ir "$s" 1); b=$(ir "$s" 3)
  echo "$s: $(( (b - a) / 2 / 1000000 )) M instructions per repeat (${MB} MB slice)"
done
