#!/usr/bin/env bash
# Benchmark rsbackup against the read+hash ceiling (b3sum) and restic on a fixed-seed corpus.
#
#   tools/bench.sh [SCALE]          SCALE 1 (default) is about 1.1 GiB; 4 is about 4.5 GiB
#   BENCH_DIR=/var/tmp/rsbackup-bench tools/bench.sh
#   PUSH=1 tools/bench.sh           also the push path in each staging mode (tools/bench-push.sh)
#
# Rerunnable: the corpus is generated once per scale and kept under BENCH_DIR; repositories and
# restores are made fresh on every run. Caches are dropped before each timed step (as root).
# Prints a table (tool, step, wall, CPU, peak RSS, MB/s, bytes stored) and the ratios, and
# writes the raw numbers to BENCH_DIR/results-SCALE.tsv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. tools/apt-ensure.sh

SCALE=${1:-${SCALE:-1}}
SEED=${SEED:-20261126}
REPEAT=${REPEAT:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rsbackup-bench}
case "$BENCH_DIR" in
  "" | / | "$ROOT" | "$ROOT"/*) echo "bench.sh: refusing BENCH_DIR=$BENCH_DIR" >&2; exit 1 ;;
esac

apt_ensure time restic python3
# b3sum is the read+hash ceiling; without it, a plain read (cat) stands in.
apt_ensure b3sum || echo "bench.sh: no b3sum package; measuring a plain read instead" >&2

CORPUS=$BENCH_DIR/corpus-scale$SCALE
RUN=$BENCH_DIR/run-scale$SCALE
RESULTS=$BENCH_DIR/results-scale$SCALE.tsv
mkdir -p "$BENCH_DIR"

if [ ! -e "$CORPUS/.complete" ]; then
  echo "== generating corpus (scale $SCALE, seed $SEED) in $CORPUS" >&2
  rm -rf "$CORPUS"
  python3 tools/gen_corpus.py generate "$CORPUS/tree" --profile bench --seed "$SEED" --scale "$SCALE"
  touch "$CORPUS/.complete"
fi
DATA=$CORPUS/tree
CORPUS_BYTES=$(du -sb --apparent-size "$DATA" | cut -f1)
CORPUS_FILES=$(find "$DATA" -type f | wc -l)
echo "== corpus: $CORPUS_FILES files, $CORPUS_BYTES bytes" >&2

echo "== building rsbackup (release)" >&2
cargo build --release --bin rsbackup >&2
RSBACKUP=$ROOT/target/release/rsbackup

rm -rf "$RUN"
mkdir -p "$RUN"
export RESTIC_PASSWORD=bench-password-not-secret
export RESTIC_CACHE_DIR=$RUN/restic-cache
RS_REPO=$RUN/rsbackup-repo
RESTIC_REPO=$RUN/restic-repo

DROP_WARNED=
drop_caches() {
  sync
  if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    if [ -z "$DROP_WARNED" ]; then
      echo "bench.sh: cannot drop the page cache (not root, or /proc/sys read-only): numbers are warm-cache" >&2
      DROP_WARNED=1
    fi
  fi
}

printf 'tool\tstep\twall_s\tcpu_s\tpeak_rss_kib\tbytes\tstored_bytes\n' >"$RESULTS"

# measure TOOL STEP BYTES STORED_DIR -- COMMAND...
measure() {
  local tool=$1 step=$2 bytes=$3 stored_dir=$4
  shift 5
  drop_caches
  echo "== $tool $step" >&2
  /usr/bin/time -f '%e %U %S %M' -o "$RUN/time.txt" "$@" >"$RUN/out.txt" 2>"$RUN/err.txt" || {
    echo "bench.sh: $tool $step failed:" >&2
    tail -n 20 "$RUN/err.txt" >&2
    exit 1
  }
  local wall user sys rss stored=""
  read -r wall user sys rss < <(tail -n 1 "$RUN/time.txt")
  [ -n "$stored_dir" ] && stored=$(du -sb "$stored_dir" | cut -f1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$step" "$wall" \
    "$(python3 -c "print(round($user + $sys, 2))")" "$rss" "$bytes" "$stored" >>"$RESULTS"
}

list_files() { find "$DATA" -type f -print0; }

if command -v b3sum >/dev/null; then
  measure b3sum "read+hash all files" "$CORPUS_BYTES" "" -- \
    sh -c 'find "$1" -type f -print0 | xargs -0 b3sum >/dev/null' sh "$DATA"
else
  measure cat "read all files (no b3sum)" "$CORPUS_BYTES" "" -- \
    sh -c 'find "$1" -type f -print0 | xargs -0 cat >/dev/null' sh "$DATA"
fi

"$RSBACKUP" keygen --output "$RUN/identity.txt" >"$RUN/recipient.txt"
"$RSBACKUP" init --repo "$RS_REPO" --recipient "$(cat "$RUN/recipient.txt")" >/dev/null
measure rsbackup "ingest (first)" "$CORPUS_BYTES" "$RS_REPO" -- \
  "$RSBACKUP" ingest --repo "$RS_REPO" --client bench "$DATA"

restic init --repo "$RESTIC_REPO" >/dev/null
measure restic "backup (first)" "$CORPUS_BYTES" "$RESTIC_REPO" -- \
  restic backup --repo "$RESTIC_REPO" "$DATA"

# The unchanged-tree steps last well under 3 s, where this kind of VM varies by 30% from run to
# run: REPEAT runs of each, the two tools alternating, and the table shows each one's median.
for _ in $(seq 1 "$REPEAT"); do
  measure rsbackup "ingest (unchanged)" "$CORPUS_BYTES" "$RS_REPO" -- \
    "$RSBACKUP" ingest --repo "$RS_REPO" --client bench "$DATA"
  measure restic "backup (unchanged)" "$CORPUS_BYTES" "$RESTIC_REPO" -- \
    restic backup --repo "$RESTIC_REPO" "$DATA"
done

rm -rf "$RUN/rs-restore"
measure rsbackup "restore" "$CORPUS_BYTES" "" -- \
  "$RSBACKUP" restore --repo "$RS_REPO" --session latest --client bench \
  --identity "$RUN/identity.txt" --target "$RUN/rs-restore"
if ! python3 tools/tree_compare.py --no-root "$DATA" "$RUN/rs-restore" >"$RUN/compare.txt"; then
  echo "bench.sh: rsbackup's restore differs from the corpus:" >&2
  head -n 20 "$RUN/compare.txt" >&2
  exit 1
fi
rm -rf "$RUN/rs-restore"

rm -rf "$RUN/restic-restore"
measure restic "restore" "$CORPUS_BYTES" "" -- \
  restic restore --repo "$RESTIC_REPO" latest --target "$RUN/restic-restore"
rm -rf "$RUN/restic-restore"

python3 - "$RESULTS" "$SCALE" <<'EOF'
import csv, sys
all_rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
# A step measured more than once is shown by its median run (by wall time).
runs = {}
for r in all_rows:
    runs.setdefault((r["tool"], r["step"]), []).append(r)
rows = []
for k, rs in runs.items():
    rows.append(sorted(rs, key=lambda r: float(r["wall_s"]))[(len(rs) - 1) // 2])
print()
print("corpus scale %s: %s bytes" % (sys.argv[2], rows[0]["bytes"]))
head = ("tool", "step", "wall", "CPU", "peak RSS MiB", "MB/s", "bytes stored")
table = []
for r in rows:
    wall = float(r["wall_s"]); cpu = float(r["cpu_s"])
    mbs = int(r["bytes"]) / 1e6 / wall if wall > 0 else float("inf")
    table.append((r["tool"], r["step"], "%.1f s" % wall, "%.1f s" % cpu,
                  "%.0f" % (int(r["peak_rss_kib"]) / 1024), "%.0f" % mbs, r["stored_bytes"] or "-"))
w = [max(len(str(x[i])) for x in [head] + table) for i in range(len(head))]
for i, r in enumerate([head] + table):
    print("  ".join(str(c).ljust(w[j]) if j < 2 else str(c).rjust(w[j]) for j, c in enumerate(r)))
    if i == 0:
        print("  ".join("-" * x for x in w))
by = {(r["tool"], r["step"]): r for r in rows}
def wall(t, s): return float(by[(t, s)]["wall_s"])
def ratio(name, a, b):
    print("%-44s %6.2fx" % (name, a / b if b else float("inf")))
print()
ceiling = [k for k in by if k[0] in ("b3sum", "cat")][0]
ratio("rsbackup first ingest / restic first backup", wall("rsbackup", "ingest (first)"), wall("restic", "backup (first)"))
ratio("rsbackup second ingest / first ingest", wall("rsbackup", "ingest (unchanged)"), wall("rsbackup", "ingest (first)"))
ratio("rsbackup second ingest / restic second", wall("rsbackup", "ingest (unchanged)"), wall("restic", "backup (unchanged)"))
ratio("rsbackup restore / restic restore", wall("rsbackup", "restore"), wall("restic", "restore"))
ratio("rsbackup repo size / restic repo size", int(by[("rsbackup", "ingest (unchanged)")]["stored_bytes"]), int(by[("restic", "backup (unchanged)")]["stored_bytes"]))
ratio("rsbackup first ingest / %s (ceiling)" % ceiling[0], wall("rsbackup", "ingest (first)"), wall(*ceiling))
print("(wall-time ratios: below 1 means rsbackup is faster or smaller)")
for k, rs in runs.items():
    if len(rs) > 1:
        print("%s %s: median of %d runs, walls %s s" % (k[0], k[1], len(rs), " ".join(r["wall_s"] for r in rs)))
EOF

# The push path (rsbackup run -> sshd -> rsbackup serve) in each staging mode, beside a bare
# rsync over the same sshd, on the same corpus: PUSH=1 tools/bench.sh (see tools/bench-push.sh).
if [ "${PUSH:-0}" = 1 ]; then
  echo "== push path (tools/bench-push.sh)" >&2
  RSBACKUP_PREBUILT=1 RSBACKUP=$RSBACKUP BENCH_DIR=$BENCH_DIR/push tools/bench-push.sh "$DATA"
fi
