#!/usr/bin/env bash
# Benchmark small edits in a large file: a BIG_MIB file of random bytes, a first ingest, then
# SESSIONS sessions that each overwrite three 4 KiB stretches of it (at 1/7, 1/2 and 4/5 of the
# file, moved 3 MiB further each session), the bytes each session adds (packs/, index.db,
# sessions/, the rest), and a prune that keeps the last KEEP sessions.
#
#   tools/bench-bigfile.sh                       1 GiB, 10 sessions
#   BIG_MIB=256 SESSIONS=3 tools/bench-bigfile.sh
#   BENCH_DIR=/dev/shm/rsbackup-bench-bigfile RSBACKUP=/path/to/rsbackup tools/bench-bigfile.sh
#
# Sizes are apparent bytes (du -sb). Everything is made fresh under BENCH_DIR on each run;
# results go to stdout and BENCH_DIR/results.txt; the file and repository are removed at the
# end unless KEEP_DIR=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. tools/apt-ensure.sh
. tools/bench-common.sh
apt_ensure time python3

BIG_MIB=${BIG_MIB:-1024}
SESSIONS=${SESSIONS:-10}
KEEP=${KEEP:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rsbackup-bench-bigfile}
bench_dir_ok bench-bigfile.sh
bench_build

bench_fresh_dir
mkdir -p "$TREE"

head -c "$((BIG_MIB << 20))" /dev/urandom >"$TREE/big.img"
"$RSBACKUP" keygen --output "$BENCH_DIR/identity.txt" >"$BENCH_DIR/recipient.txt"
"$RSBACKUP" init --repo "$REPO" --recipient "$(cat "$BENCH_DIR/recipient.txt")" >/dev/null

# sizes: total packs index sessions
sizes() {
  local idx=$(( $(bytes_of "$REPO/index.db") + $(bytes_of "$REPO/index.db-wal") ))
  echo "$(bytes_of "$REPO") $(bytes_of "$REPO/packs") $idx $(bytes_of "$REPO/sessions")"
}
ingest() {
  /usr/bin/time -f '%e' -o "$BENCH_DIR/time.txt" \
    "$RSBACKUP" ingest --repo "$REPO" --client bench "$TREE" >/dev/null 2>"$BENCH_DIR/err.txt" || {
    echo "bench-bigfile.sh: ingest failed:" >&2
    tail -n 20 "$BENCH_DIR/err.txt" >&2
    exit 1
  }
  tail -n 1 "$BENCH_DIR/time.txt"
}
row() { # STEP WALL TOTAL PACKS INDEX SESSIONS
  printf '%-22s %8s %14s %14s %12s %10s\n' "$@" | tee -a "$RESULTS"
}

echo "file: $BIG_MIB MiB of random bytes; $SESSIONS sessions of three 4 KiB overwrites" | tee "$RESULTS"
row step wall_s total_B packs_B index_B sessions_B
wall=$(ingest)
read -r t0 p0 i0 s0 < <(sizes)
row "first ingest" "$wall" "$t0" "$p0" "$i0" "$s0"
for k in $(seq 1 "$SESSIONS"); do
  python3 - "$TREE/big.img" "$k" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
k = int(sys.argv[2])
size = os.fstat(fd).st_size
for i, at in enumerate((size // 7, size // 2, size - size // 5)):
    at = (at + k * (3 << 20)) % (size - 4096)
    os.pwrite(fd, bytes([0x41 + (i + 3 * k) % 26]) * 4096, at)
os.close(fd)
PY
  wall=$(ingest)
  read -r t p i s < <(sizes)
  row "edit session $k" "$wall" "$t" "$p" "$i" "$s"
done
read -r t1 p1 i1 s1 < <(sizes)
n=$SESSIONS
row "added per session" "" "$(( (t1 - t0) / n ))" "$(( (p1 - p0) / n ))" "$(( (i1 - i0) / n ))" "$(( (s1 - s0) / n ))"
"$RSBACKUP" prune --repo "$REPO" --keep-last "$KEEP" >/dev/null 2>"$BENCH_DIR/err.txt" || {
  echo "bench-bigfile.sh: prune failed:" >&2
  tail -n 20 "$BENCH_DIR/err.txt" >&2
  exit 1
}
read -r t p i s < <(sizes)
row "prune keep-last $KEEP" "" "$t" "$p" "$i" "$s"
