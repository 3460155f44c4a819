#!/usr/bin/env bash
# Benchmark the push path (`rsbackup run` -> real sshd on loopback -> `rsbackup serve`) in each
# staging mode, beside a bare `rsync -a` of the same tree over the same ssh.
#
#   tools/bench-push.sh [TREE]     TREE: a directory to back up (copied first); default: the
#                                  bench corpus of tools/gen_corpus.py at SCALE (default 1)
#   MODES="keep hollow purge hollow-basis" BIG_MIB=1024 REPEAT=3 BENCH_DIR=/var/tmp/rsbackup-bench-push
#   CASES="edited renamed big"     which cases run after the first and unchanged pushes
#
# Cases per mode: first push, unchanged push, edited copy (a line appended to 1% of the files), a renamed
# directory (the largest top-level one), then a big file (BIG_MIB of random bytes) pushed once
# and again after three 4 KiB edits. `hollow-basis` is hollow with keep-basis = ["*.img"], which
# covers the big file. The unchanged push (and the bare rsync's) runs REPEAT times. Columns:
# wall seconds and client CPU (rsync and ssh included) of the whole `rsbackup run`, and rsync's
# `Total bytes sent`, and where the run's time went (`steps`: from the job report's step start
# times, ms: before prepare, prepare, the rsync passes, complete and the reports). As root (sshd, and caches dropped before the first push of each mode).
# Raw numbers go to BENCH_DIR/push-results.tsv. Not part of CI.
#
# sshd runs every request through the account's shell, and bash sources ~/.bashrc for a
# command that comes over ssh: a developer's root account (pyenv, nvm...) adds its start-up to
# each of the run's three requests (against one for the bare rsync), which an installed server
# (account `rsbackup`, shell /bin/sh: docs/install.md) does not pay. So the bench's sshd sees
# an empty ~/.bashrc (a bind mount in its own mount namespace; the file itself is untouched).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. tools/apt-ensure.sh
. tools/bench-edits.sh
apt_ensure time rsync openssh-server openssh-client python3

BENCH_DIR=${BENCH_DIR:-/var/tmp/rsbackup-bench-push}
case "$BENCH_DIR" in
  "" | / | "$ROOT" | "$ROOT"/*) echo "bench-push.sh: refusing BENCH_DIR=$BENCH_DIR" >&2; exit 1 ;;
esac
SCALE=${SCALE:-1}
SEED=${SEED:-20261126}
MODES=${MODES:-keep hollow purge hollow-basis}
BIG_MIB=${BIG_MIB:-1024}
REPEAT=${REPEAT:-3}
CASES=${CASES-edited renamed big}
RSBACKUP=${RSBACKUP:-$ROOT/target/release/rsbackup}

if [ -z "${RSBACKUP_PREBUILT:-}" ]; then
  cargo build --release --bin rsbackup >&2
fi
mkdir -p "$BENCH_DIR"
BASE=${1:-}
if [ -z "$BASE" ]; then
  BASE=$BENCH_DIR/corpus-scale$SCALE/tree
  if [ ! -e "$BENCH_DIR/corpus-scale$SCALE/.complete" ]; then
    rm -rf "$BENCH_DIR/corpus-scale$SCALE"
    python3 tools/gen_corpus.py generate "$BASE" --profile bench --seed "$SEED" --scale "$SCALE"
    touch "$BENCH_DIR/corpus-scale$SCALE/.complete"
  fi
fi
RUN=$BENCH_DIR/run
SSHD_PID=
stop() { [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null || true; }
trap stop EXIT
rm -rf "$RUN"
mkdir -p "$RUN"/{home,mail,bare}
RESULTS=$BENCH_DIR/push-results.tsv
printf 'mode\tcase\twall_s\tclient_cpu_s\tbytes_sent\tsteps_ms\n' >"$RESULTS"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

ssh-keygen -q -t ed25519 -N '' -f "$RUN/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$RUN/client_key"
ssh-keygen -q -t ed25519 -N '' -f "$RUN/bare_key"
"$RSBACKUP" keygen --output "$RUN/identity.txt" >"$RUN/recipient.txt"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$RUN/authorized_keys" <<EOF
command="$RSBACKUP serve --client bench --config $RUN/server.toml",restrict $(cat "$RUN/client_key.pub")
$(cat "$RUN/bare_key.pub")
EOF
mkdir -p /run/sshd
cat >"$RUN/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $RUN/host_key
PidFile $RUN/sshd.pid
AuthorizedKeysFile $RUN/authorized_keys
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
EOF
: >"$RUN/empty-rc"
if ! { [ -e "$HOME/.bashrc" ] && unshare -m --propagation private sh -c \
  'mount --bind "$1" "$2" && exec /usr/sbin/sshd -f "$3" -E "$4"' \
  sh "$RUN/empty-rc" "$HOME/.bashrc" "$RUN/sshd_config" "$RUN/sshd.log"; }; then
  echo "bench-push.sh: sshd runs with the account's own ~/.bashrc" >&2
  /usr/sbin/sshd -f "$RUN/sshd_config" -E "$RUN/sshd.log"
fi
for _ in $(seq 50); do [ -s "$RUN/sshd.pid" ] && break; sleep 0.1; done
SSHD_PID=$(cat "$RUN/sshd.pid")
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$RUN/host_key.pub")" >"$RUN/known_hosts"
SSH_BARE="ssh -i $RUN/bare_key -p $PORT -o UserKnownHostsFile=$RUN/known_hosts -o BatchMode=yes -T"

server_toml() { # MODE
  local mode=$1 extra=""
  [ "$mode" = hollow-basis ] && { mode=hollow; extra='keep-basis = ["*.img"]'; }
  cat >"$RUN/server.toml" <<EOF
repository = "$RUN/repo"
staging-root = "$RUN/staging"
audit-log = "$RUN/audit.log"
alert-state = "$RUN/alert-state.json"

[mail]
from = "bench@server.test"
admin = ["root@localhost"]
transport = "directory"
directory = "$RUN/mail"

[clients.bench]
keys = ["$(cat "$RUN/client_key.pub")"]
addresses = ["127.0.0.1/32"]
windows = ["daily 00:00-24:00"]
staging-mode = "$mode"
$extra
EOF
}

cat >"$RUN/client.toml" <<EOF
name = "bench"
sources = ["$RUN/src"]
machine-id-file = "$RUN/machine-id"

[server]
host = "127.0.0.1"
port = $PORT
user = "root"
ssh-key = "$RUN/client_key"
known-hosts = "$RUN/known_hosts"

[mail]
from = "bench@client.test"
reports-to = ["root@localhost"]
errors-to = ["root@localhost"]
transport = "directory"
directory = "$RUN/mail"
EOF
echo "bench-machine" >"$RUN/machine-id"

# record MODE CASE -- COMMAND...: time COMMAND, take rsync's bytes sent from its output.
record() {
  local mode=$1 case=$2
  shift 3
  /usr/bin/time -f '%e %U %S' -o "$RUN/time.txt" "$@" >"$RUN/out.txt" 2>&1 || {
    echo "bench-push.sh: $mode $case failed:" >&2
    tail -n 30 "$RUN/out.txt" >&2
    exit 1
  }
  local wall user sys sent steps
  cp "$RUN/out.txt" "$RUN/out-$mode-$case.txt"
  read -r wall user sys < <(tail -n 1 "$RUN/time.txt")
  read -r sent steps < <(python3 - "$RUN/out.txt" <<'PY'
import re, sys
from datetime import datetime
text = open(sys.argv[1], errors="replace").read()
m = re.findall(r"bytes sent by rsync\s+([\d,]+)", text) or re.findall(r"Total bytes sent: ([\d,]+)", text)
sent = sum(int(x.replace(",", "")) for x in m) if m else "-"
def t(s):  # 2026-12-03T18:24:55.818013774Z, to the microsecond
    return datetime.fromisoformat(s[:26].rstrip("Z")).timestamp()
start = re.search(r"^started:\s+(\S+)", text, re.M)
end = re.search(r"^finished:\s+(\S+)", text, re.M)
marks = [("pre", t(start.group(1)))] if start else []
for name, at in re.findall(r"^--- output of step \d+: (\w+)[^(]*\(started (\S+)\) ---", text, re.M):
    if marks and marks[-1][0] == name:
        continue  # a second rsync pass counts with the first
    marks.append((name, t(at)))
if end and marks:
    marks.append(("end", t(end.group(1))))
steps = ",".join(f"{a}={1000 * (tb - ta):.0f}" for (a, ta), (_, tb) in zip(marks, marks[1:]))
print(sent, steps or "-")
PY
)
  local cpu
  cpu=$(python3 -c "print(f'{$user + $sys:.2f}')")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$case" "$wall" "$cpu" "$sent" "$steps" | tee -a "$RESULTS" >&2
}

PUSH=("$RSBACKUP" run --config "$RUN/client.toml" --state-dir "$RUN/state" --print)

fresh_copy() {
  rm -rf "$RUN/src"
  cp -a "$BASE" "$RUN/src"
}

RENAME_FROM=$(cd "$BASE" && du -s -- */ 2>/dev/null | sort -rn | head -n 1 | cut -f2 | tr -d /)

# The baseline: rsync -a of the same tree over the same sshd, no forced command.
fresh_copy
drop_caches
record bare-rsync first -- rsync -a --stats -e "$SSH_BARE" "$RUN/src/" "root@127.0.0.1:$RUN/bare/"
for _ in $(seq 1 "$REPEAT"); do
  record bare-rsync unchanged -- rsync -a --stats -e "$SSH_BARE" "$RUN/src/" "root@127.0.0.1:$RUN/bare/"
done
rm -rf "$RUN/bare"

for mode in $MODES; do
  rm -rf "$RUN/repo" "$RUN/staging" "$RUN/state" "$RUN/mail"/*
  mkdir -p "$RUN/staging"
  "$RSBACKUP" init --repo "$RUN/repo" --recipient "$(cat "$RUN/recipient.txt")" >/dev/null
  server_toml "$mode"
  fresh_copy
  drop_caches
  record "$mode" first -- "${PUSH[@]}"
  for _ in $(seq 1 "$REPEAT"); do
    record "$mode" unchanged -- "${PUSH[@]}"
  done
  case " $CASES " in *" edited "*)
    edit_tree "$RUN/src"
    record "$mode" edited -- "${PUSH[@]}" ;;
  esac
  if [ -n "$RENAME_FROM" ] && [[ " $CASES " == *" renamed "* ]]; then
    mv "$RUN/src/$RENAME_FROM" "$RUN/src/$RENAME_FROM.renamed"
    record "$mode" renamed -- "${PUSH[@]}"
  fi
  if [ "$BIG_MIB" -gt 0 ] && [[ " $CASES " == *" big "* ]]; then
    head -c "$((BIG_MIB << 20))" /dev/urandom >"$RUN/src/big.img"
    record "$mode" big-first -- "${PUSH[@]}"
    edit_big "$RUN/src/big.img"
    record "$mode" big-edited -- "${PUSH[@]}"
  fi
done

echo
column -t -s $'\t' "$RESULTS"
# Medians of the repeated rows, and the unchanged push against the bare rsync.
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
by = {}
for mode, case, wall, cpu, sent, steps in rows:
    by.setdefault((mode, case), []).append((float(wall), steps))
bare = by.get(("bare-rsync", "unchanged"))
base = statistics.median(w for w, _ in bare) if bare else None
print()
for (mode, case), runs in by.items():
    if len(runs) < 2:
        continue
    wall = statistics.median(w for w, _ in runs)
    parts = {}
    for _, steps in runs:
        for kv in steps.split(","):
            if "=" in kv:
                k, v = kv.split("=")
                parts.setdefault(k, []).append(float(v))
    split = " ".join(f"{k}={statistics.median(v):.0f}" for k, v in parts.items())
    ratio = f" ({wall / base:.2f}x the bare rsync)" if base and mode != "bare-rsync" else ""
    print(f"{mode} {case}: median {wall:.2f} s of {len(runs)}{ratio}  {split} (ms)")
PY
