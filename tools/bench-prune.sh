#!/usr/bin/env bash
# Benchmark roll-off: a repository of SESSIONS sessions of a tree of FILES small files (plus a
# few larger ones), about 1% of the files changed between sessions; then `prune --keep-last 10`
# (time, peak RSS, bytes reclaimed), a second prune that has nothing to do, and the repository
# size against the sum of the sessions' logical sizes.
#
#   tools/bench-prune.sh                      50,000 files, 100 sessions
#   FILES=5000 SESSIONS=20 tools/bench-prune.sh
#   BENCH_DIR=/var/tmp/rsbackup-bench-prune tools/bench-prune.sh
#
# index.db and the packs are reported apart, with the bytes of each table and index of index.db
# (SQLite's dbstat), before and after the prune.
#
# Everything is made fresh under BENCH_DIR on each run. Results go to stdout and to
# BENCH_DIR/results.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. tools/apt-ensure.sh
. tools/bench-common.sh
apt_ensure time python3

FILES=${FILES:-50000}
SESSIONS=${SESSIONS:-100}
KEEP=${KEEP:-10}
SEED=${SEED:-20261126}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rsbackup-bench-prune}
bench_dir_ok bench-prune.sh
bench_build

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
TREE=$BENCH_DIR/tree
REPO=$BENCH_DIR/repo
RESULTS=$BENCH_DIR/results.txt

# The tree: FILES files of 200 B - 8 KiB (half text-like, half random) in 500 directories, and
# four larger files (2-16 MiB). `mutate` rewrites 1% of the small files and appends to one large
# file; mtimes are set an hour back so the files cache may record them.
cat >"$BENCH_DIR/tree.py" <<'EOF'
import os, random, sys, time
mode, root, files, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
words = b"backup restore chunk pack session index the a of server client cron \n".split(b" ")
def body(r, n):
    if r.random() < 0.5:
        return os.urandom(n) if False else r.randbytes(n)
    out = bytearray()
    while len(out) < n:
        out += r.choice(words) + b" "
    return bytes(out[:n])
def path(i):
    return os.path.join(root, "d%03d" % (i % 500), "f%06d" % i)
old = time.time() - 3600
if mode == "generate":
    for d in range(500):
        os.makedirs(os.path.join(root, "d%03d" % d), exist_ok=True)
    for i in range(files):
        with open(path(i), "wb") as f:
            f.write(body(rng, rng.randint(200, 8192)))
        os.utime(path(i), (old, old))
    os.makedirs(os.path.join(root, "large"), exist_ok=True)
    for j, mib in enumerate([2, 4, 8, 16]):
        p = os.path.join(root, "large", "l%d" % j)
        with open(p, "wb") as f:
            f.write(rng.randbytes(mib << 20))
        os.utime(p, (old, old))
else:
    for i in rng.sample(range(files), max(1, files // 100)):
        with open(path(i), "wb") as f:
            f.write(body(rng, rng.randint(200, 8192)))
        os.utime(path(i), (old, old))
    p = os.path.join(root, "large", "l%d" % rng.randrange(4))
    with open(p, "ab") as f:
        f.write(rng.randbytes(64 << 10))
    os.utime(p, (old, old))
EOF

echo "== generating $FILES files in $TREE" >&2
python3 "$BENCH_DIR/tree.py" generate "$TREE" "$FILES" "$SEED"

"$RSBACKUP" keygen --output "$BENCH_DIR/identity.txt" >"$BENCH_DIR/keygen.out"
RECIPIENT=$(grep -o 'age1[0-9a-z]*' "$BENCH_DIR/keygen.out" | head -1)
"$RSBACKUP" init --repo "$REPO" --recipient "$RECIPIENT" >/dev/null

echo "== ingesting $SESSIONS sessions (1% of files changed between sessions)" >&2
START=$(date +%s)
for s in $(seq 1 "$SESSIONS"); do
  if [ "$s" -gt 1 ]; then
    python3 "$BENCH_DIR/tree.py" mutate "$TREE" "$FILES" "$((SEED + s))"
  fi
  "$RSBACKUP" ingest --repo "$REPO" --client bench "$TREE" >/dev/null
  if [ $((s % 10)) -eq 0 ]; then echo "   $s sessions ($(($(date +%s) - START)) s)" >&2; fi
done

logical_sum() {
  "$RSBACKUP" sessions --repo "$REPO" --json |
    python3 -c 'import json,sys; print(sum(s["bytes"] for s in json.load(sys.stdin)))'
}
count() {
  python3 - "$REPO/index.db" "$1" <<'EOF'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])
EOF
}

# Bytes of index.db (with its write-ahead log) and of packs/.
index_bytes() {
  echo $(($(stat -c %s "$REPO/index.db") + $(stat -c %s "$REPO/index.db-wal" 2>/dev/null || echo 0)))
}
pack_bytes() { du -sb "$REPO/packs" | cut -f1; }
# Bytes per table and index of index.db, largest first.
table_bytes() {
  python3 - "$REPO/index.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
free = db.execute("PRAGMA freelist_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
print("  " + ", ".join(f"{n} {b}" for n, b in rows if b >= 65536) + f"; free pages {free}")
EOF
}

LOGICAL_BEFORE=$(logical_sum)
INDEX_BEFORE=$(index_bytes)
PACKS_BYTES_BEFORE=$(pack_bytes)
TABLES_BEFORE=$(table_bytes)
SIZE_BEFORE=$(du -sb "$REPO" | cut -f1)
CHUNKS_BEFORE=$(count "SELECT count(*) FROM chunks")
PACKS_BEFORE=$(count "SELECT count(*) FROM packs")

echo "== prune --keep-last $KEEP" >&2
/usr/bin/time -f '%e %M' -o "$BENCH_DIR/prune1.time" \
  "$RSBACKUP" prune --repo "$REPO" --keep-last "$KEEP" --json >"$BENCH_DIR/prune1.json"
read -r PRUNE_S PRUNE_KB <"$BENCH_DIR/prune1.time"
SIZE_AFTER=$(du -sb "$REPO" | cut -f1)
LOGICAL_AFTER=$(logical_sum)
CHUNKS_AFTER=$(count "SELECT count(*) FROM chunks")
PACKS_AFTER=$(count "SELECT count(*) FROM packs")
INDEX_AFTER=$(index_bytes)
PACKS_BYTES_AFTER=$(pack_bytes)
TABLES_AFTER=$(table_bytes)

echo "== second prune (nothing to do)" >&2
/usr/bin/time -f '%e %M' -o "$BENCH_DIR/prune2.time" \
  "$RSBACKUP" prune --repo "$REPO" --keep-last "$KEEP" --json >"$BENCH_DIR/prune2.json"
read -r NOOP_S NOOP_KB <"$BENCH_DIR/prune2.time"

echo "== check --read-data" >&2
/usr/bin/time -f '%e %M' -o "$BENCH_DIR/check.time" \
  "$RSBACKUP" check --repo "$REPO" --read-data >/dev/null
read -r CHECK_S _ <"$BENCH_DIR/check.time"

REPORTED=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["collect"]; print(c["bytes_reclaimed"], c["chunks_deleted"], c["packs_emptied"], c["packs_repacked"], c["packs_written"], c["keys_deleted"])' "$BENCH_DIR/prune1.json")
NOOP_COLLECT=$(python3 -c 'import json,sys; print("ran" if json.load(open(sys.argv[1]))["collect"] else "skipped")' "$BENCH_DIR/prune2.json")

{
  echo "tree: $FILES small files + 4 large; $SESSIONS sessions; keep-last $KEEP"
  echo "before prune: repository $SIZE_BEFORE bytes, $CHUNKS_BEFORE chunks, $PACKS_BEFORE packs; sum of logical sizes $LOGICAL_BEFORE bytes ($(python3 -c "print(f'{$SIZE_BEFORE/$LOGICAL_BEFORE*100:.2f}')")% of logical)"
  echo "before prune: index.db $INDEX_BEFORE bytes, packs $PACKS_BYTES_BEFORE bytes; index.db tables and indexes (bytes, >= 64 KiB):"
  echo "$TABLES_BEFORE"
  echo "prune: ${PRUNE_S} s wall, peak RSS ${PRUNE_KB} KiB"
  echo "reclaimed (du): $((SIZE_BEFORE - SIZE_AFTER)) bytes; reported: bytes chunks emptied repacked written keys = $REPORTED"
  echo "after prune: repository $SIZE_AFTER bytes, $CHUNKS_AFTER chunks, $PACKS_AFTER packs; sum of logical sizes $LOGICAL_AFTER bytes ($(python3 -c "print(f'{$SIZE_AFTER/$LOGICAL_AFTER*100:.2f}')")% of logical)"
  echo "after prune: index.db $INDEX_AFTER bytes, packs $PACKS_BYTES_AFTER bytes; index.db tables and indexes:"
  echo "$TABLES_AFTER"
  echo "no-op prune: ${NOOP_S} s wall, peak RSS ${NOOP_KB} KiB, collect $NOOP_COLLECT"
  echo "check --read-data after prune: ${CHECK_S} s, clean"
} | tee "$RESULTS"
