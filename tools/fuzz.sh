#!/usr/bin/env bash
# The long fuzz run (docs/architecture.md, "Fuzzing"):
#
#   tools/fuzz.sh TARGET [SECONDS]     one target (default 600 s)
#   tools/fuzz.sh all [SECONDS]        every target in turn, SECONDS each
#   tools/fuzz.sh list                 the targets
#
# Coverage-guided with afl when `cargo afl` is installed (cargo install cargo-afl), else the
# stable byte-mutation runner of the test suite; RSBACKUP_FUZZ_ENGINE=stable forces the latter.
# It runs under nice. afl's findings land in fuzz/afl/target/findings/TARGET/; every crash or
# hang found is listed at the end: copy it to fuzz/crashes/TARGET/ with the fix, and the test
# suite replays it for good.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

targets() {
  sed -n 's/^ *name: "\(.*\)",$/\1/p' src/fuzz/mod.rs
}

usage() {
  echo "usage: tools/fuzz.sh TARGET|all|list [SECONDS]; targets: $(targets | tr '\n' ' ')" >&2
  exit 2
}

target=${1:-}
seconds=${2:-600}
[[ -n $target ]] || usage
[[ $seconds =~ ^[0-9]+$ ]] || usage
if [[ $target == list ]]; then
  targets
  exit 0
fi
if [[ $target == all ]]; then
  status=0
  for t in $(targets); do
    "$0" "$t" "$seconds" || status=1
  done
  exit $status
fi
targets | grep -qx -- "$target" || usage

engine=${RSBACKUP_FUZZ_ENGINE:-afl}
if [[ $engine == afl ]] && ! cargo afl --version >/dev/null 2>&1; then
  echo "tools/fuzz.sh: cargo afl is not installed (cargo install cargo-afl); using the stable runner" >&2
  engine=stable
fi

if [[ $engine == stable ]]; then
  RSBACKUP_FUZZ_SECONDS=$seconds nice cargo test --release --test fuzz -- --exact "$target"
  exit
fi

(cd fuzz/afl && nice cargo afl build --release)
findings=fuzz/afl/target/findings/$target
inputs=fuzz/afl/target/inputs/$target
rm -rf "$inputs"
mkdir -p "$inputs" "$findings"
cp fuzz/corpus/"$target"/* "$inputs"/
if compgen -G "fuzz/crashes/$target/*" >/dev/null; then
  cp fuzz/crashes/"$target"/* "$inputs"/
fi
# -V: stop after SECONDS; -t: one input over 2 s is a hang; -m: 1 GiB of address space at most,
# so that an unbounded allocation is a crash. The crash core pattern and CPU governor of a
# shared machine are not ours to change.
AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_AUTORESUME=1 \
  nice cargo afl fuzz -i "$inputs" -o "$findings" -V "$seconds" -t 2000 -m 1024 \
  -- fuzz/afl/target/release/rsbackup-fuzz-afl "$target" >"$findings/afl.log" 2>&1 || {
  echo "tools/fuzz.sh: afl-fuzz failed; the end of $findings/afl.log:" >&2
  tail -20 "$findings/afl.log" >&2
  exit 1
}
stats=$findings/default/fuzzer_stats
field() { sed -n "s/^$1 *: *//p" "$stats"; }
echo "fuzz $target (afl): $(field execs_done) executions in $(field run_time) s, corpus $(field corpus_count), crashes $(field saved_crashes), hangs $(field saved_hangs)"
found=$(find "$findings/default/crashes" "$findings/default/hangs" -type f -name 'id:*' 2>/dev/null || true)
if [[ -n $found ]]; then
  echo "$found"
  exit 1
fi
