#!/usr/bin/env bash
# The main job of rsbackup, end to end on one machine, as root on a fresh Debian:
#   keygen -> init -> ingest a generated tree -> sessions -> change a few files -> ingest again
#   -> restore both sessions -> diff -r and a metadata compare against what was ingested.
# Exits non-zero on any failure or difference.
#
#   DEMO_DIR=/var/tmp/rsbackup-demo tools/demo.sh
#
# Everything is written under DEMO_DIR (removed and recreated), never in the work tree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. tools/apt-ensure.sh

DEMO_DIR=${DEMO_DIR:-/var/tmp/rsbackup-demo}
case "$DEMO_DIR" in
  "" | / | "$ROOT" | "$ROOT"/*) echo "demo.sh: refusing DEMO_DIR=$DEMO_DIR" >&2; exit 1 ;;
esac

# diffutils for diff -r; rsync and ssh for the push path.
apt_ensure diffutils rsync openssh-client python3

say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

say "building rsbackup (release)"
cargo build --release --bin rsbackup
RSBACKUP=$ROOT/target/release/rsbackup

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
SRC=$DEMO_DIR/staging/demo-client
REPO=$DEMO_DIR/repo
IDENTITY=$DEMO_DIR/identity.txt
FIRST=$DEMO_DIR/first-version
RESTORED=$DEMO_DIR/restored

say "generating a sample tree in $SRC"
python3 tools/gen_corpus.py generate "$SRC" --profile demo --seed 7
echo "$(find "$SRC" | wc -l) entries, $(du -sb --apparent-size "$SRC" | cut -f1) bytes apparent, $(du -s -B1 "$SRC" | cut -f1) on disk"
# What the first session must restore to, kept aside before the tree changes.
cp -a --sparse=always "$SRC" "$FIRST"

say "rsbackup keygen (the identity stays offline in real use)"
RECIPIENT=$("$RSBACKUP" keygen --output "$IDENTITY")
echo "recipient: $RECIPIENT"

say "rsbackup init"
"$RSBACKUP" init --repo "$REPO" --recipient "$RECIPIENT"

say "rsbackup ingest (first)"
t=$(now)
S1=$("$RSBACKUP" ingest --repo "$REPO" --client demo-client --json "$SRC" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["session"])')
T1=$(elapsed "$t")
echo "session $S1 in $T1 s"

say "changing a few files"
python3 tools/gen_corpus.py mutate "$SRC" --seed 7

say "rsbackup ingest (second)"
t=$(now)
"$RSBACKUP" ingest --repo "$REPO" --client demo-client "$SRC"
T2=$(elapsed "$t")

say "rsbackup sessions"
"$RSBACKUP" sessions --repo "$REPO"

say "rsbackup ls (first lines of the latest session)"
"$RSBACKUP" ls --repo "$REPO" --session latest --client demo-client --identity "$IDENTITY" --long |
  head -n 8

say "rsbackup check --read-data"
"$RSBACKUP" check --repo "$REPO" --read-data --identity "$IDENTITY"

status=0
compare() { # compare WHAT EXPECTED RESTORED
  local what=$1 expected=$2 got=$3
  if diff -r --no-dereference "$expected" "$got" >"$DEMO_DIR/diff.txt" 2>&1; then
    echo "diff -r: $what: no differences"
  else
    echo "diff -r: $what: DIFFERENCES:"; head -n 20 "$DEMO_DIR/diff.txt"; status=1
  fi
  # The restore target itself is created by restore; compare metadata below it.
  if python3 tools/tree_compare.py --no-root "$expected" "$got" >"$DEMO_DIR/meta.txt"; then
    echo "metadata: $what: no differences (type, mode, owner, size, mtime ns, links, xattrs)"
  else
    echo "metadata: $what: DIFFERENCES:"; head -n 20 "$DEMO_DIR/meta.txt"; status=1
  fi
}

say "rsbackup restore (latest) and compare with the tree as it is now"
t=$(now)
"$RSBACKUP" restore --repo "$REPO" --session latest --client demo-client \
  --identity "$IDENTITY" --target "$RESTORED/latest"
T3=$(elapsed "$t")
compare "latest session" "$SRC" "$RESTORED/latest"

say "rsbackup restore (session $S1) and compare with the first version"
"$RSBACKUP" restore --repo "$REPO" --session "$S1" \
  --identity "$IDENTITY" --target "$RESTORED/first"
compare "first session" "$FIRST" "$RESTORED/first"

say "summary"
printf '%-28s %s\n' \
  "source (apparent)" "$(du -sb --apparent-size "$SRC" | cut -f1) bytes" \
  "repository on disk" "$(du -sb "$REPO" | cut -f1) bytes" \
  "first ingest" "$T1 s" \
  "second ingest (few changes)" "$T2 s" \
  "restore of latest" "$T3 s"
if [ "$status" -eq 0 ]; then
  echo "OK: both sessions restored byte for byte with their metadata"
else
  echo "FAILED: a restored tree differs from what was ingested (see above)" >&2
fi
exit "$status"
