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
