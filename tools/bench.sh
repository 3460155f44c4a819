#!/usr/bin/env bash
# Benchmark rsbackup against restic and bupstash, and its push path against a bare rsync, on a
# fixed-seed generated corpus and on a real source tree.
#
#   tools/bench.sh [SCALE]          SCALE 1 (default) is about 1.1 GiB; 4 is about 4.5 GiB
#   BENCH_DIR=/var/tmp/rsbackup-bench REPEAT=3 BIG_MIB=1024 TREES="corpus crates" tools/bench.sh
#   PUSH=0 tools/bench.sh           without the push columns (tools/bench-push.sh)
#   BUPSTASH=0 tools/bench.sh       without bupstash
#
# Trees (TREES):
#   corpus  tools/gen_corpus.py --profile bench at SCALE, generated once and kept in BENCH_DIR;
#   crates  the unpacked sources of the crates this project builds with (Cargo.lock): `cargo
#           fetch` puts them in ~/.cargo/registry/src, and exactly those are copied (the same
#           Cargo.lock always gives the same tree).
#
# Cases, on a working copy of each tree, every tool backing up the same state in turn: first
# backup; unchanged (REPEAT runs, the tools alternating, median shown); edited (a line appended
# to 1% of the files); renamed (the largest top-level directory); big-first (a BIG_MIB file of
# random bytes added); big-edited (three 4 KiB edits in it); restore of the last state (cold,
# rsbackup's checked against the tree). Bytes added are the repository's growth on disk.
# The push columns are tools/bench-push.sh on the same tree (real sshd on loopback, each
# staging mode in MODES, rsync's bytes sent). The table shows each cell as wall seconds and
# bytes, and the ratio of rsbackup (ingest, and the hollow push) to the best peer of the row.
# Caches are dropped before each timed step (as root). Raw numbers: BENCH_DIR/results-*.tsv.
# Not part of CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. tools/apt-ensure.sh
. tools/bench-edits.sh

SCALE=${1:-${SCALE:-1}}
SEED=${SEED:-20261126}
REPEAT=${REPEAT:-3}
BIG_MIB=${BIG_MIB:-1024}
TREES=${TREES:-corpus crates}
PUSH=${PUSH:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp/rsbackup-bench}
case "$BENCH_DIR" in
  "" | / | "$ROOT" | "$ROOT"/*) echo "bench.sh: refusing BENCH_DIR=$BENCH_DIR" >&2; exit 1 ;;
esac

# bupstash builds against libsodium; its build needs the headers and pkg-config.
apt_ensure time restic python3 libsodium-dev pkg-config
apt_ensure b3sum || echo "bench.sh: no b3sum package; measuring a plain read instead" >&2
export PATH=$HOME/.cargo/bin:$PATH
if [ "${BUPSTASH:-1}" = 1 ] && ! command -v bupstash >/dev/null; then
  echo "== installing bupstash (cargo install bupstash --locked)" >&2
  cargo install bupstash --locked >&2 || echo "bench.sh: bupstash did not build; measuring without it" >&2
fi
HAVE_BUPSTASH=0
[ "${BUPSTASH:-1}" = 1 ] && command -v bupstash >/dev/null && HAVE_BUPSTASH=1

echo "== building rsbackup (release)" >&2
cargo build --release --bin rsbackup >&2
RSBACKUP=$ROOT/target/release/rsbackup
mkdir -p "$BENCH_DIR"

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

# The tree to back up, by name: prints its path.
tree_path() {
  case $1 in
    corpus)
      local corpus=$BENCH_DIR/corpus-scale$SCALE
      if [ ! -e "$corpus/.complete" ]; then
        echo "== generating corpus (scale $SCALE, seed $SEED) in $corpus" >&2
        rm -rf "$corpus"
        python3 tools/gen_corpus.py generate "$corpus/tree" --profile bench --seed "$SEED" \
          --scale "$SCALE" >&2
        touch "$corpus/.complete"
      fi
      echo "$corpus/tree"
      ;;
    crates)
      local crates=$BENCH_DIR/crates
      if [ ! -e "$crates/.complete" ]; then
        echo "== fetching this project's crates (cargo fetch) into $crates" >&2
        cargo fetch --locked >&2 || cargo fetch --locked --offline >&2
        rm -rf "$crates"
        mkdir -p "$crates/tree"
        # Exactly the crates Cargo.lock names (the registry holds whatever else was built here).
        python3 - Cargo.lock "${CARGO_HOME:-$HOME/.cargo}/registry/src" "$crates/tree" <<'PY'
import glob, os, shutil, sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
for p in lock["package"]:
    if not p.get("source", "").startswith("registry+"):
        continue
    name = "%s-%s" % (p["name"], p["version"])
    found = glob.glob(os.path.join(sys.argv[2], "*", name))
    if not found:
        sys.exit("bench.sh: %s is not unpacked in %s (cargo fetch)" % (name, sys.argv[2]))
    shutil.copytree(found[0], os.path.join(sys.argv[3], name), symlinks=True)
PY
        touch "$crates/.complete"
      fi
      echo "$crates/tree"
      ;;
    *) echo "bench.sh: unknown tree $1 (corpus, crates)" >&2; exit 1 ;;
  esac
}

# One tree: every peer, every case.
bench_tree() {
  local name=$1 data=$2
  local run=$BENCH_DIR/run-$name results=$BENCH_DIR/results-$name.tsv
  rm -rf "$run"
  mkdir -p "$run"
  local work=$run/$name
  cp -a "$data" "$work"
  printf 'tool\tcase\twall_s\tcpu_s\tpeak_rss_kib\tstored_bytes\tadded_bytes\n' >"$results"
  export RESTIC_PASSWORD=bench-password-not-secret RESTIC_CACHE_DIR=$run/restic-cache
  export BUPSTASH_KEY=$run/bupstash.key BUPSTASH_REPOSITORY=$run/bupstash-repo
  export BUPSTASH_SEND_LOG=$run/bupstash.sendlog
  local rs_repo=$run/rsbackup-repo restic_repo=$run/restic-repo
  "$RSBACKUP" keygen --output "$run/identity.txt" >"$run/recipient.txt"
  "$RSBACKUP" init --repo "$rs_repo" --recipient "$(cat "$run/recipient.txt")" >/dev/null
  restic init --repo "$restic_repo" >/dev/null
  local tools=(rsbackup restic)
  if [ "$HAVE_BUPSTASH" = 1 ]; then
    bupstash new-key -o "$BUPSTASH_KEY"
    bupstash init >/dev/null
    tools+=(bupstash)
  fi
  declare -A last_size=()

  # measure TOOL CASE -- COMMAND...
  measure() {
    local tool=$1 case=$2
    shift 3
    drop_caches
    echo "== $name: $tool $case" >&2
    /usr/bin/time -f '%e %U %S %M' -o "$run/time.txt" "$@" >"$run/out.txt" 2>"$run/err.txt" || {
      echo "bench.sh: $name: $tool $case failed:" >&2
      tail -n 20 "$run/err.txt" >&2
      exit 1
    }
    local wall user sys rss repo stored="" added=""
    read -r wall user sys rss < <(tail -n 1 "$run/time.txt")
    case $tool in
      rsbackup) repo=$rs_repo ;; restic) repo=$restic_repo ;; bupstash) repo=$BUPSTASH_REPOSITORY ;;
    esac
    if [ "${case#restore}" = "$case" ]; then
      stored=$(du -sb "$repo" | cut -f1)
      added=$((stored - ${last_size[$tool]:-0}))
      last_size[$tool]=$stored
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$case" "$wall" \
      "$(python3 -c "print(round($user + $sys, 2))")" "$rss" "$stored" "$added" >>"$results"
  }
  backup() { # TOOL CASE
    case $1 in
      rsbackup) measure rsbackup "$2" -- "$RSBACKUP" ingest --repo "$rs_repo" --client bench "$work" ;;
      restic) measure restic "$2" -- restic backup --repo "$restic_repo" "$work" ;;
      bupstash) measure bupstash "$2" -- bupstash put "$work" ;;
    esac
  }
  all() { local t; for t in "${tools[@]}"; do backup "$t" "$1"; done; }

  all first
  for _ in $(seq 1 "$REPEAT"); do all unchanged; done
  edit_tree "$work"
  all edited
  local from
  from=$(cd "$work" && du -s -- */ 2>/dev/null | sort -rn | head -n 1 | cut -f2 | tr -d /)
  if [ -n "$from" ]; then
    mv "$work/$from" "$work/$from.renamed"
    all renamed
  fi
  if [ "$BIG_MIB" -gt 0 ]; then
    head -c "$((BIG_MIB << 20))" /dev/urandom >"$work/big.img"
    all big-first
    edit_big "$work/big.img"
    all big-edited
  fi

  rm -rf "$run/restore"
  measure rsbackup restore -- "$RSBACKUP" restore --repo "$rs_repo" --session latest \
    --client bench --identity "$run/identity.txt" --target "$run/restore"
  if ! python3 tools/tree_compare.py --no-root "$work" "$run/restore" >"$run/compare.txt"; then
    echo "bench.sh: $name: rsbackup's restore differs from the tree:" >&2
    head -n 20 "$run/compare.txt" >&2
    exit 1
  fi
  rm -rf "$run/restore"
  measure restic restore -- restic restore --repo "$restic_repo" latest --target "$run/restore"
  rm -rf "$run/restore"
  if [ "$HAVE_BUPSTASH" = 1 ]; then
    local id
    id=$(bupstash list --format=jsonl1 | python3 -c \
      'import json, sys; print([json.loads(l) for l in sys.stdin][-1]["id"])')
    mkdir -p "$run/restore"
    measure bupstash restore -- bupstash restore --into "$run/restore" "id=$id"
    rm -rf "$run/restore"
  fi

  # The push path on the same tree (pristine), each staging mode beside a bare rsync.
  rm -rf "$work" "$rs_repo" "$restic_repo" "$BUPSTASH_REPOSITORY"
  if [ "$PUSH" = 1 ]; then
    echo "== $name: push path (tools/bench-push.sh)" >&2
    RSBACKUP_PREBUILT=1 RSBACKUP=$RSBACKUP BENCH_DIR=$run/push REPEAT=$REPEAT BIG_MIB=$BIG_MIB \
      tools/bench-push.sh "$data" >&2
    cp "$run/push/push-results.tsv" "$BENCH_DIR/push-$name.tsv"
  else
    rm -f "$BENCH_DIR/push-$name.tsv"
  fi
  rm -rf "$run/push/run"
}

if command -v b3sum >/dev/null; then CEILING=b3sum; else CEILING=cat; fi
for name in $TREES; do
  data=$(tree_path "$name")
  bytes=$(du -sb --apparent-size "$data" | cut -f1)
  files=$(find "$data" -type f | wc -l)
  echo "== $name: $files files, $bytes bytes" >&2
  drop_caches
  /usr/bin/time -f '%e' -o "$BENCH_DIR/ceiling-$name.txt" \
    sh -c 'find "$1" -type f -print0 | xargs -0 "$2" >/dev/null' sh "$data" "$CEILING"
  printf '%s\t%s\t%s\t%s\n' "$name" "$files" "$bytes" "$(tail -n 1 "$BENCH_DIR/ceiling-$name.txt")" \
    >"$BENCH_DIR/tree-$name.tsv"
  bench_tree "$name" "$data"
done

python3 - "$BENCH_DIR" "$CEILING" $TREES <<'EOF'
import csv, os, statistics, sys
bench, ceiling, trees = sys.argv[1], sys.argv[2], sys.argv[3:]
CASES = ["first", "unchanged", "edited", "renamed", "big-first", "big-edited", "restore"]
PEERS = ["restic", "bupstash"]

def rows(path):
    return list(csv.DictReader(open(path), delimiter="\t")) if os.path.exists(path) else []

def median_row(rs):
    # A case measured more than once is shown by its median run (by wall time).
    return sorted(rs, key=lambda r: float(r["wall_s"]))[(len(rs) - 1) // 2]

def mb(n):
    return "%.1f MB" % (int(n) / 1e6)

for tree in trees:
    name, files, size, read_s = open(os.path.join(bench, "tree-%s.tsv" % tree)).read().split("\t")
    print("\n## %s: %s files, %s bytes (%s reads them all in %.1f s)" % (tree, files, size, ceiling, float(read_s)))
    cells = {}
    for r in rows(os.path.join(bench, "results-%s.tsv" % tree)):
        cells.setdefault((r["tool"], r["case"]), []).append(r)
    push = {}
    for r in rows(os.path.join(bench, "push-%s.tsv" % tree)):
        push.setdefault((r["mode"], r["case"]), []).append(r)
    tools = [t for t in ["rsbackup"] + PEERS if any(k[0] == t for k in cells)]
    modes = []
    for (m, _) in push:
        if m not in modes:
            modes.append(m)
    head = ["case"] + ["%s" % t for t in tools] + ["push %s" % m for m in modes] + \
        ["ingest/best peer", "push hollow/best peer"]
    table = []
    ratios = []
    for case in CASES:
        line = [case]
        walls = {}
        for t in tools:
            rs = cells.get((t, case))
            if not rs:
                line.append("-")
                continue
            r = median_row(rs)
            walls[t] = float(r["wall_s"])
            text = "%.2f s" % walls[t]
            if r["added_bytes"]:
                text += ", +" + mb(r["added_bytes"])
            if case in ("first", "big-first"):
                text += ", %d MiB" % (int(r["peak_rss_kib"]) // 1024)
            line.append(text)
        pushed = {}
        for m in modes:
            rs = push.get((m, case))
            if not rs:
                line.append("-")
                continue
            r = median_row(rs)
            pushed[m] = float(r["wall_s"])
            sent = r["bytes_sent"]
            line.append("%.2f s, %s sent" % (pushed[m], mb(sent) if sent.isdigit() else sent))
        peers = [walls[p] for p in PEERS if p in walls]
        best = min(peers) if peers else None
        line.append("%.2fx" % (walls["rsbackup"] / best) if best and "rsbackup" in walls else "-")
        line.append("%.2fx" % (pushed["hollow"] / best) if best and "hollow" in pushed else "-")
        table.append(line)
    # Bytes added to the repository, rsbackup against the best peer.
    for case in CASES[:-1]:
        got = {t: int(median_row(cells[(t, case)])["added_bytes"] or 0) for t in tools if (t, case) in cells}
        # Growth under 1 MB (an unchanged tree: metadata only) is shown, not divided.
        peers = [got[p] for p in PEERS if p in got]
        if "rsbackup" in got and peers and min(peers) < 1e6:
            ratios.append("%-12s bytes added: rsbackup %d B, peers %s B" % (
                case, got["rsbackup"], ", ".join("%s %d" % (p, got[p]) for p in PEERS if p in got)))
        elif "rsbackup" in got and peers:
            ratios.append("%-12s bytes added: rsbackup %s, best peer %s: %.2fx" % (
                case, mb(got["rsbackup"]), mb(min(peers)), got["rsbackup"] / min(peers)))
    w = [max(len(str(x[i])) for x in [head] + table) for i in range(len(head))]
    for i, r in enumerate([head] + table):
        print("  ".join(str(c).ljust(w[j]) for j, c in enumerate(r)))
        if i == 0:
            print("  ".join("-" * x for x in w))
    print()
    for r in ratios:
        print(r)
    bare = push.get(("bare-rsync", "unchanged"))
    hollow = push.get(("hollow", "unchanged"))
    if bare and hollow:
        b, h = float(median_row(bare)["wall_s"]), float(median_row(hollow)["wall_s"])
        print("unchanged push, hollow / bare rsync -a over the same ssh: %.2f s / %.2f s = %.2fx" % (h, b, h / b))
    for k, rs in sorted(cells.items()):
        if len(rs) > 1:
            print("%s %s: median of %d runs, walls %s s" % (k[0], k[1], len(rs), " ".join(r["wall_s"] for r in rs)))
print("\n(ratios of wall times: below 1 means rsbackup is faster)")
EOF
