#!/usr/bin/env bash
# Exactness oracle for engine changes: builds examples/dump at a base commit
# (in a temporary worktree, own target dir) and at the working tree, runs
# both over the same inputs, and diffs every finding (start, end, category,
# type, rule) and the redacted output of each rule set (all, secrets, pii).
#   bench/scan/oracle.sh [BASE]        (default BASE: HEAD~1)
# With ORACLE_BASE_BIN and ORACLE_NEW_BIN (two built examples/dump binaries)
# nothing is built: those two are compared (a release build per side takes
# minutes on a shared machine).
# Inputs: the gen.py benchmark corpus (32 MB, fixed seed), the test corpus
# files, the labelled samples, and a digit-dense adversarial file.
# Exit 0 when identical. Any difference must be argued in the commit.
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE="${1:-HEAD~1}"
WORK="${ORACLE_DIR:-/tmp/airlock-scrub-oracle}"
REF_TREE="$WORK/ref-tree"
REF_TARGET="${ORACLE_REF_TARGET:-$WORK/ref-target}"
mkdir -p "$WORK/in" "$WORK/base" "$WORK/new"

python3 bench/scan/gen.py "$WORK/gen" 32 >/dev/null
cp "$WORK/gen/mixed.txt" "$WORK/in/mixed.txt"
cat "$WORK"/gen/labelled/* > "$WORK/in/labelled.txt"
cat crates/airlock-scrub/tests/corpus/*.txt > "$WORK/in/corpus.txt"
python3 - "$WORK/in/adv.txt" <<'PY'
import random, sys
r = random.Random(7)
alpha = "0123456789 .-/()+@:_,\n\tabcdefxyzABZ#ESDEGB"
bait = ["+1 ", "(", "+44 ", "DE", "GB", "born ", "DOB: ", "SSN ", "ssn: ", "card ", "@",
        "user@", "x.y@ex.com ", " St", "Street ", "phone: ", "tel ", "::", "fe80::"]
parts = []
for _ in range(200000):
    k = r.random()
    if k < 0.3: parts.append("".join(r.choice("0123456789") for _ in range(r.randint(1, 20))))
    elif k < 0.5: parts.append(".".join(str(r.randint(0, 300)) for _ in range(r.randint(2, 5))))
    elif k < 0.6: parts.append(r.choice(bait))
    else: parts.append("".join(r.choice(alpha) for _ in range(r.randint(1, 8))))
open(sys.argv[1], "w").write("".join(parts))
PY

BASE_BIN="${ORACLE_BASE_BIN:-$REF_TARGET/release/examples/dump}"
NEW_BIN="${ORACLE_NEW_BIN:-${CARGO_TARGET_DIR:-target}/release/examples/dump}"
if [ -z "${ORACLE_BASE_BIN:-}" ]; then
  git worktree remove --force "$REF_TREE" 2>/dev/null || true
  git worktree add --detach "$REF_TREE" "$BASE" >/dev/null
  trap 'git worktree remove --force "$REF_TREE" 2>/dev/null || true' EXIT
  # The dump example may not exist at BASE: use the current one.
  cp crates/airlock-scrub/examples/dump.rs "$REF_TREE/crates/airlock-scrub/examples/dump.rs"
  (cd "$REF_TREE" && CARGO_TARGET_DIR="$REF_TARGET" cargo build --release -q -p airlock-scrub --example dump)
fi
[ -n "${ORACLE_NEW_BIN:-}" ] || cargo build --release -q -p airlock-scrub --example dump

rc=0
for f in mixed labelled corpus adv; do
  for side in base new; do
    cp "$WORK/in/$f.txt" "$WORK/$side/$f.txt"
  done
  "$BASE_BIN" "$WORK/base/$f.txt" > "$WORK/base/$f.findings"
  "$NEW_BIN" "$WORK/new/$f.txt" > "$WORK/new/$f.findings"
  if cmp -s "$WORK/base/$f.findings" "$WORK/new/$f.findings"; then
    echo "$f: findings identical ($(wc -l < "$WORK/new/$f.findings"))"
  else
    echo "$f: findings DIFFER"; diff "$WORK/base/$f.findings" "$WORK/new/$f.findings" | head -20; rc=1
  fi
  for set in all secret pii; do
    cmp -s "$WORK/base/$f.txt.$set.redacted" "$WORK/new/$f.txt.$set.redacted" \
      || { echo "$f: redacted output ($set) DIFFERS"; rc=1; }
  done
done
exit $rc
