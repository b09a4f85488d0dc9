#!/usr/bin/env bash
# Start-to-exit of /bin/true under Airlock (all controls) vs bubblewrap with
# comparable flags vs plain unshare vs fork+exec, in one hyperfine run, plus
# the cgroup setup time read from the audit log's attestation records.
#
# Usage: bench/sandbox.sh            (builds target/release/airlock if missing)
# Needs: hyperfine, bubblewrap (apt-get install -y hyperfine bubblewrap), root
#        or unprivileged user namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

AIRLOCK=$(realpath -m "${AIRLOCK:-target/release/airlock}")
[ -x "$AIRLOCK" ] || cargo build --release -q -p airlock
for t in hyperfine bwrap unshare; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install -y hyperfine bubblewrap)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/airlock-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ws"
export AIRLOCK_DATA_DIR="$work/data"
"$AIRLOCK" init >/dev/null

# The system under test on one core, as BENCH.md asks.
pin="taskset -c 1"
command -v taskset >/dev/null || pin=""

# bwrap with the same kind of isolation: all namespaces, read-only /usr,
# fresh /proc and /dev, tmpfs /tmp, the workspace read-write, no capabilities,
# uid 1000, clean environment, new session, dies with its parent. (bwrap has
# no Landlock, seccomp filter, cgroups, proxy or audit log here.)
bwrap_cmd="bwrap --unshare-all --die-with-parent --new-session --clearenv \
  --uid 1000 --gid 1000 --cap-drop ALL \
  --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib \
  --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin \
  --proc /proc --dev /dev --tmpfs /tmp --bind $work/ws /workspace --chdir /workspace \
  /bin/true"
unshare_cmd="unshare --user --map-root-user --mount --pid --fork --net --ipc --uts /bin/true"
airlock_cmd="$AIRLOCK run --workspace $work/ws -- /bin/true"
# Same command, stopping after the plan: config, audit log, proxy start-up
# (CA generation) and planning, but no sandbox. airlock - airlock-explain
# approximates the sandbox's own cost.
explain_cmd="$AIRLOCK run --explain --workspace $work/ws -- /bin/true"

$airlock_cmd  # fail early if the sandbox cannot start here

cd "$work"
$pin hyperfine -N --warmup 20 --min-runs 200 --export-json "$work/sandbox.json" \
  -n airlock "$airlock_cmd" \
  -n airlock-explain "$explain_cmd" \
  -n bwrap "$bwrap_cmd" \
  -n unshare "$unshare_cmd" \
  -n fork+exec "/bin/true"

python3 - "$work/sandbox.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
ms = lambda n: r[n]["median"] * 1000
for n in ("airlock", "airlock-explain", "bwrap", "unshare", "fork+exec"):
    x = r[n]
    print(f"{n:16s} median {x['median']*1000:7.2f} ms  mean {x['mean']*1000:7.2f} ± {x['stddev']*1000:5.2f} ms  min {x['min']*1000:6.2f}  max {x['max']*1000:6.2f}")
print(f"airlock/bwrap (median) = {ms('airlock')/ms('bwrap'):.2f}x")
sb = ms('airlock') - ms('airlock-explain')
print(f"sandbox only (airlock - airlock-explain) = {sb:.2f} ms; /bwrap = {sb/ms('bwrap'):.2f}x")
EOF

# Cgroup setup (mkdir + limit writes in every hierarchy) as the supervisor
# measured it, from the attestation records of the runs above.
"$AIRLOCK" audit tail --json -n 100000 | python3 -c '
import json, sys, statistics
v = []
for line in sys.stdin:
    e = json.loads(line)["event"]
    if e["action"] == "sandbox.attestation":
        v.append(e["details"]["cgroup"]["setup_micros"])
v.sort()
print(f"cgroup setup: n={len(v)} median {statistics.median(v)} us  p90 {v[int(len(v)*0.9)]} us  layout",
      "(see attestation)")
'
