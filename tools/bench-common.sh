# Shared by the tools/bench-*.sh scripts (sourced after `cd` to the source tree and ROOT=$PWD).

# bench_dir_ok SCRIPT: refuse a BENCH_DIR that is empty, /, or inside the source tree (the
# scripts remove it whole).
bench_dir_ok() {
  case "$BENCH_DIR" in
    "" | / | "$ROOT" | "$ROOT"/*) echo "$1: refusing BENCH_DIR=$BENCH_DIR" >&2; exit 1 ;;
  esac
}

# bench_build: build the release binary, unless RSBACKUP already names one (to measure another
# build); sets RSBACKUP.
bench_build() {
  if [ -z "${RSBACKUP:-}" ]; then
    echo "== building rsbackup (release)" >&2
    cargo build --release --bin rsbackup >&2
    RSBACKUP=$ROOT/target/release/rsbackup
  fi
}

# bench_fresh_dir: make BENCH_DIR afresh and set TREE, REPO and RESULTS in it; TREE and REPO
# are removed when the script exits, unless KEEP_DIR=1.
bench_fresh_dir() {
  rm -rf "$BENCH_DIR"
  mkdir -p "$BENCH_DIR"
  TREE=$BENCH_DIR/tree
  REPO=$BENCH_DIR/repo
  RESULTS=$BENCH_DIR/results.txt
  trap '[ "${KEEP_DIR:-0}" = 1 ] || rm -rf "$TREE" "$REPO"' EXIT
}

# bytes_of PATH: apparent bytes under PATH (du -sb), 0 when it does not exist.
bytes_of() { if [ -e "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }
