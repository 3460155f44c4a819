#!/usr/bin/env bash
# Benchmark of `rsbackup mirror` over real ssh on loopback (needs root for sshd).
#
#   tools/bench-mirror.sh [SIZE_MB] [NEW_MB]
#
# 1. A repository with SIZE_MB (default 256) of incompressible data; a first full mirror over ssh
#    to a mirror repository, timed, side by side with `rsync -a` of the same repository directory
#    over the same sshd.
# 2. A session that adds NEW_MB (default 32) of new data; the mirror after it: bytes on the wire
#    against N, the new stored bytes of the session (goal: at most 1.05 x N + a few KiB).
set -euo pipefail

SIZE_MB=${1:-256}
NEW_MB=${2:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin rsbackup
BIN="$ROOT/target/release/rsbackup"
W=$(mktemp -d /tmp/rsbackup-bench-mirror.XXXXXX)
SSHD_PID=
cleanup() {
    [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
mbps() { echo "scale=1; $1 / 1048576 / $2" | bc; }
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

# --- repositories and data -------------------------------------------------------------------
R=$("$BIN" keygen --output "$W/id.txt")
"$BIN" init --repo "$W/primary" --recipient "$R" >/dev/null
mkdir -p "$W/src" "$W/offsite" "$W/mail"
for i in $(seq 1 $((SIZE_MB / 16))); do
    head -c $((16 << 20)) /dev/urandom >"$W/src/file$i"
done
"$BIN" ingest --repo "$W/primary" --client web --json "$W/src" >"$W/ingest1.json"

# --- sshd on loopback with the mirror forced command ------------------------------------------
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/mirror_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/rsync_key"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
USER_NAME=$(id -un)
MAIL="[mail]
from = \"rsbackup@example.org\"
admin = [\"root@example.org\"]
transport = \"directory\"
directory = \"$W/mail\""
cat >"$W/offsite/server.toml" <<EOF
repository = "$W/offsite/own"
staging-root = "$W/offsite/staging"
$MAIL
[mirror-of.main]
repository = "$W/offsite/mirror"
addresses = ["127.0.0.1"]
EOF
cat >"$W/server.toml" <<EOF
repository = "$W/primary"
staging-root = "$W/staging"
$MAIL
[mirrors.offsite]
host = "127.0.0.1"
port = $PORT
user = "$USER_NAME"
ssh-key = "$W/mirror_key"
ssh-options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]
EOF
{
    echo "command=\"$BIN mirror-serve --config $W/offsite/server.toml --mirror-of main\",restrict $(cat "$W/mirror_key.pub")"
    cat "$W/rsync_key.pub"
} >"$W/authorized_keys"
cat >"$W/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $W/host_key
AuthorizedKeysFile $W/authorized_keys
PidFile $W/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
EOF
/usr/sbin/sshd -D -f "$W/sshd_config" -E "$W/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.05
done

# --- 1. first full mirror vs rsync -a ----------------------------------------------------------
REPO_BYTES=$(du -sb "$W/primary" | cut -f1)
sync
T0=$(now)
"$BIN" mirror --config "$W/server.toml" --to offsite --json >"$W/mirror1.json"
T1=$(now)
SSH="ssh -F /dev/null -i $W/rsync_key -p $PORT -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
sync
T2=$(now)
rsync -a -e "$SSH" "$W/primary/" "$USER_NAME@127.0.0.1:$W/rsync-copy/"
T3=$(now)
MIRROR_S=$(secs "$T0" "$T1")
RSYNC_S=$(secs "$T2" "$T3")
echo "first full copy of a $((REPO_BYTES >> 20)) MiB repository over ssh on loopback:"
printf '  rsbackup mirror  %6.2f s  %6s MiB/s  (%s bytes on the wire)\n' "$MIRROR_S" \
    "$(mbps "$REPO_BYTES" "$MIRROR_S")" "$(json "$W/mirror1.json" wire_bytes_sent)"
printf '  rsync -a         %6.2f s  %6s MiB/s\n' "$RSYNC_S" "$(mbps "$REPO_BYTES" "$RSYNC_S")"

# --- 2. a session adding N new bytes -------------------------------------------------------------
head -c $((NEW_MB << 20)) /dev/urandom >"$W/src/new"
"$BIN" ingest --repo "$W/primary" --client web --json "$W/src" >"$W/ingest2.json"
N=$(json "$W/ingest2.json" new_stored_bytes)
"$BIN" mirror --config "$W/server.toml" --to offsite --json >"$W/mirror2.json"
SENT=$(json "$W/mirror2.json" wire_bytes_sent)
echo "mirror after a session that added N = $N bytes of chunks:"
echo "  $SENT bytes sent, ratio $(echo "scale=5; $SENT / $N" | bc), overhead $((SENT - N)) bytes" \
    "(goal: at most 1.05 x N + a few KiB)"
echo "  chunks offered $(json "$W/mirror2.json" chunks_offered), sent $(json "$W/mirror2.json" chunks_sent)," \
    "full reconciliation: $(json "$W/mirror2.json" full_reconcile)"
"$BIN" check --repo "$W/offsite/mirror" --read-data >/dev/null && echo "mirror check --read-data: clean"
