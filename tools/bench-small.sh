#!/usr/bin/env bash
# Benchmark many small files and scattered edits: a tree of 400,000 files of 10-300 bytes
# (tools/gen_corpus.py --profile tiny, about 63 MB), a first and an unchanged ingest (time,
# peak RSS), then SESSIONS sessions that each append a line to EDITS random files, the bytes
# each session adds, and a prune that keeps the last KEEP sessions.
#
#   tools/bench-small.sh                          400,000 files, 10 sessions of 4,000 edits
#   SCALE=0.25 SESSIONS=3 tools/bench-small.sh
#   BENCH_DIR=/dev/shm/rsbackup-bench-small RSBACKUP=/path/to/rsbackup tools/bench-small.sh
#
# Sizes are apparent bytes (du -sb): packs/, index.db (with its -wal), cache/ (the files cache
# and placeholder tables: a cache, but inside the repository directory, so counted) and the
# whole repository directory. A tiny file takes a whole filesystem block, so the tree needs
# about 1.7 GB of disk (or tmpfs) at scale 1.
#
# Everything is made fresh under BENCH_DIR on each run. Results go to stdout and to
# BENCH_DIR/results.txt; the tree and repository are removed at the end unless KEEP_DIR=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. tools/apt-ensure.sh
. tools/bench-common.sh
apt_ensure time python3

SCALE=${SCALE:-1}
SESSIONS=${SESSIONS:-10}
EDITS=${EDITS:-4000}
KEEP=${KEEP:-3}
SEED=${SEED:-20261203}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rsbackup-bench-small}
bench_dir_ok bench-small.sh
bench_build

bench_fresh_dir

echo "== generating the tree (scale $SCALE, seed $SEED)" >&2
python3 tools/gen_corpus.py generate "$TREE" --profile tiny --seed "$SEED" --scale "$SCALE" >&2
TREE_BYTES=$(du -sb --apparent-size "$TREE" | cut -f1)
TREE_FILES=$(find "$TREE" -type f | wc -l)

"$RSBACKUP" keygen --output "$BENCH_DIR/identity.txt" >"$BENCH_DIR/recipient.txt"
"$RSBACKUP" init --repo "$REPO" --recipient "$(cat "$BENCH_DIR/recipient.txt")" >/dev/null
if [ -n "${MANIFEST_SIZES:-}" ]; then
  # "MIN AVG MAX": try other manifest chunk sizes than init's.
  read -r mmin mavg mmax <<<"$MANIFEST_SIZES"
  python3 - "$REPO/repository.toml" "$mmin" "$mavg" "$mmax" <<'PY'
import re, sys
p, lo, avg, hi = sys.argv[1:]
s = open(p).read()
head, sep, tail = s.partition("[manifest]")
tail = re.sub(r"min-size = \d+", "min-size = " + lo, tail, count=1)
tail = re.sub(r"avg-size = \d+", "avg-size = " + avg, tail, count=1)
tail = re.sub(r"max-size = \d+", "max-size = " + hi, tail, count=1)
open(p, "w").write(head + sep + tail)
PY
fi

sizes() {
  local idx=$(( $(bytes_of "$REPO/index.db") + $(bytes_of "$REPO/index.db-wal") ))
  echo "$(bytes_of "$REPO/packs") $idx $(bytes_of "$REPO/cache") $(bytes_of "$REPO")"
}
mb() { python3 -c "print('%.1f' % ($1 / 1e6))"; }

# ingest STEP: one ingest, timed; prints "wall rss_kib".
ingest() {
  /usr/bin/time -f '%e %M' -o "$BENCH_DIR/time.txt" \
    "$RSBACKUP" ingest --repo "$REPO" --client bench "$TREE" >"$BENCH_DIR/out.txt" 2>"$BENCH_DIR/err.txt" || {
    echo "bench-small.sh: ingest $1 failed:" >&2
    tail -n 20 "$BENCH_DIR/err.txt" >&2
    exit 1
  }
  tail -n 1 "$BENCH_DIR/time.txt"
}

{
  echo "tree: $TREE_FILES files, $TREE_BYTES bytes (scale $SCALE); $SESSIONS sessions of $EDITS appended lines"
  printf '%-22s %8s %9s %9s %9s %9s %9s\n' step wall_s rss_MiB packs_MB index_MB cache_MB repo_MB
} | tee "$RESULTS"

row() { # STEP WALL RSS_KIB
  read -r packs idx cache total < <(sizes)
  printf '%-22s %8s %9s %9s %9s %9s %9s\n' "$1" "$2" "$(( $3 / 1024 ))" \
    "$(mb "$packs")" "$(mb "$idx")" "$(mb "$cache")" "$(mb "$total")" | tee -a "$RESULTS"
}

read -r wall rss < <(ingest first)
row "first ingest" "$wall" "$rss"
read -r wall rss < <(ingest unchanged)
row "unchanged ingest" "$wall" "$rss"
read -r _ _ _ before < <(sizes)
start=$before
for s in $(seq 1 "$SESSIONS"); do
  python3 tools/gen_corpus.py scatter "$TREE" --seed "$s" --count "$EDITS" >/dev/null
  read -r wall rss < <(ingest "edit $s")
  row "edit session $s" "$wall" "$rss"
done
read -r _ _ _ after < <(sizes)
echo "added per edit session: $(mb $(( (after - start) / SESSIONS ))) MB (mean of $SESSIONS)" | tee -a "$RESULTS"
/usr/bin/time -f '%e %M' -o "$BENCH_DIR/time.txt" \
  "$RSBACKUP" prune --repo "$REPO" --keep-last "$KEEP" >/dev/null 2>"$BENCH_DIR/err.txt" || {
  echo "bench-small.sh: prune failed:" >&2
  tail -n 20 "$BENCH_DIR/err.txt" >&2
  exit 1
}
read -r wall rss < <(tail -n 1 "$BENCH_DIR/time.txt")
row "prune keep-last $KEEP" "$wall" "$rss"
