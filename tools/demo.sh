#!/usr/bin/env bash
# The main job of rsbackup, end to end on one machine, as root on a fresh Debian: the push path.
#
#   server side: a backup account (rsbackup-demo), a repository, server.toml, and a dedicated
#                sshd on a loopback port whose authorized_keys comes from `rsbackup
#                authorized-keys` (forced command `rsbackup serve`)
#   client side: client.toml (ssh key, pinned host key, reports to a directory of .eml files)
#   then:        rsbackup run -> the mailed job report -> change a few files -> rsbackup run
#                again (only the changes travel) -> restore both sessions -> diff -r and a
#                metadata compare against what was backed up.
# Exits non-zero on any failure or difference.
#
#   DEMO_DIR=/var/tmp/rsbackup-demo tools/demo.sh
#
# Everything is written under DEMO_DIR (removed and recreated), never in the work tree; the demo's
# sshd is stopped on exit. The account rsbackup-demo is created once and reused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. tools/apt-ensure.sh

DEMO_DIR=${DEMO_DIR:-/var/tmp/rsbackup-demo}
case "$DEMO_DIR" in
  "" | / | "$ROOT" | "$ROOT"/*) echo "demo.sh: refusing DEMO_DIR=$DEMO_DIR" >&2; exit 1 ;;
esac
DEMO_USER=rsbackup-demo

# diffutils for diff -r; rsync, sshd and ssh for the push path.
apt_ensure diffutils rsync openssh-server openssh-client python3

say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

# A demo sshd left by an earlier, interrupted run of this script.
stop_sshd() {
  local pidfile=$DEMO_DIR/server/sshd.pid
  if [ -s "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}
stop_sshd
trap stop_sshd EXIT

say "building rsbackup (release)"
cargo build --release --bin rsbackup

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"/{bin,server,client}
chmod 755 "$DEMO_DIR" "$DEMO_DIR/bin" "$DEMO_DIR/server"
chmod 700 "$DEMO_DIR/client"
# The forced command runs as the backup account: give it a copy it can execute.
install -m 755 "$ROOT/target/release/rsbackup" "$DEMO_DIR/bin/rsbackup"
RSBACKUP=$DEMO_DIR/bin/rsbackup
SERVER=$DEMO_DIR/server
CLIENT=$DEMO_DIR/client
IDENTITY=$DEMO_DIR/identity.txt
SRC=$CLIENT/data/demo-tree
FIRST=$DEMO_DIR/first-version
RESTORED=$DEMO_DIR/restored

say "server: the backup account $DEMO_USER"
if ! id "$DEMO_USER" >/dev/null 2>&1; then
  useradd --system --home-dir "$SERVER/home" --no-create-home --shell /bin/sh "$DEMO_USER"
fi
# No password login, but not locked: sshd (without PAM) refuses every login of a locked account.
usermod -p '*' "$DEMO_USER"
mkdir -p "$SERVER/home/.ssh" "$SERVER/staging" "$SERVER/mail"
echo "user $DEMO_USER, home $SERVER/home"

say "generating a sample tree in $SRC"
python3 tools/gen_corpus.py generate "$SRC" --profile demo --seed 7
echo "$(find "$SRC" | wc -l) entries, $(du -sb --apparent-size "$SRC" | cut -f1) bytes apparent, $(du -s -B1 "$SRC" | cut -f1) on disk"
# What the first session must restore to, kept aside before the tree changes.
cp -a --sparse=always "$SRC" "$FIRST"

say "rsbackup keygen and init (the identity stays offline in real use)"
RECIPIENT=$("$RSBACKUP" keygen --output "$IDENTITY")
"$RSBACKUP" init --repo "$SERVER/repo" --recipient "$RECIPIENT"
echo "recipient: $RECIPIENT"

say "client: its ssh key"
ssh-keygen -q -t ed25519 -N '' -C "root@demo-client" -f "$CLIENT/id_ed25519"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

say "server: server.toml"
cat >"$SERVER/server.toml" <<EOF
repository = "$SERVER/repo"
staging-root = "$SERVER/staging"
audit-log = "$SERVER/audit.log"
alert-state = "$SERVER/alert-state.json"

[mail]
from = "rsbackup@backup.demo"
admin = ["root@localhost"]
transport = "directory"
directory = "$SERVER/mail"

[clients.demo-client]
keys = ["$(cat "$CLIENT/id_ed25519.pub")"]
addresses = ["127.0.0.1/32"]
windows = ["daily 00:00-24:00"]
staging-mode = "keep"
EOF
cat "$SERVER/server.toml"

say "server: authorized_keys from rsbackup authorized-keys"
"$RSBACKUP" authorized-keys --config "$SERVER/server.toml" >"$SERVER/home/.ssh/authorized_keys"
cut -c1-150 "$SERVER/home/.ssh/authorized_keys"
chown -R "$DEMO_USER:" "$SERVER"
chmod 600 "$SERVER/home/.ssh/authorized_keys"

say "server: a dedicated sshd on 127.0.0.1:$PORT"
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$SERVER/ssh_host_ed25519_key"
cat >"$SERVER/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $SERVER/ssh_host_ed25519_key
PidFile $SERVER/sshd.pid
AuthorizedKeysFile $SERVER/home/.ssh/authorized_keys
AllowUsers $DEMO_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
StrictModes no
X11Forwarding no
EOF
/usr/sbin/sshd -f "$SERVER/sshd_config" -E "$SERVER/sshd.log"
for _ in $(seq 50); do
  [ -s "$SERVER/sshd.pid" ] && break
  sleep 0.1
done
echo "sshd pid $(cat "$SERVER/sshd.pid"), log $SERVER/sshd.log"

say "client: client.toml (host key pinned in known_hosts)"
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$SERVER/ssh_host_ed25519_key.pub")" >"$CLIENT/known_hosts"
mkdir -p "$CLIENT/mail"
cat >"$CLIENT/client.toml" <<EOF
name = "demo-client"
sources = ["$SRC"]
init-hooks = [{ argv = ["/bin/sh", "-c", "echo init hook: a database dump would be made here"] }]
cleanup-hooks = [{ argv = ["/bin/sh", "-c", "echo cleanup hook: and removed here"] }]

[server]
host = "127.0.0.1"
port = $PORT
user = "$DEMO_USER"
ssh-key = "$CLIENT/id_ed25519"
known-hosts = "$CLIENT/known_hosts"

[mail]
from = "rsbackup@demo-client"
errors-to = ["root@localhost"]
reports-to = ["root@localhost"]
transport = "directory"
directory = "$CLIENT/mail"
EOF
cat "$CLIENT/client.toml"

# Print the newest .eml in the client's mail directory, decoded.
show_newest_mail() {
  python3 - "$CLIENT/mail" <<'PY'
import email, email.policy, pathlib, sys
files = sorted(pathlib.Path(sys.argv[1]).glob("*.eml"), key=lambda p: p.stat().st_mtime)
msg = email.message_from_bytes(files[-1].read_bytes(), policy=email.policy.default)
print("Subject:", msg["Subject"])
print("To:", msg["To"])
print()
print(msg.get_content())
PY
}
# One figure of the newest job report.
figure() {
  python3 - "$CLIENT/mail" "$1" <<'PY'
import email, email.policy, pathlib, sys
files = sorted(pathlib.Path(sys.argv[1]).glob("*.eml"), key=lambda p: p.stat().st_mtime)
body = email.message_from_bytes(files[-1].read_bytes(), policy=email.policy.default).get_content()
print(next((l.strip()[len(sys.argv[2]):].strip() for l in body.splitlines()
            if l.strip().startswith(sys.argv[2])), "?"))
PY
}
run_client() {
  local code=0
  "$RSBACKUP" run --config "$CLIENT/client.toml" --state-dir "$CLIENT/state" || code=$?
  echo "rsbackup run exit code: $code"
  return "$code"
}

say "rsbackup run (first: everything travels)"
t=$(now)
run_client
T1=$(elapsed "$t")
say "the job report, as mailed ($(ls "$CLIENT/mail" | wc -l) message in $CLIENT/mail)"
show_newest_mail
SENT1=$(figure "bytes sent by rsync")

say "changing a few files"
python3 tools/gen_corpus.py mutate "$SRC" --seed 7

say "rsbackup run (second: only the changes travel)"
t=$(now)
run_client
T2=$(elapsed "$t")
SENT2=$(figure "bytes sent by rsync")
show_newest_mail | sed -n '/^  sources/,/^steps:/p'

say "rsbackup sessions (on the server)"
"$RSBACKUP" sessions --repo "$SERVER/repo"
S1=$("$RSBACKUP" sessions --repo "$SERVER/repo" --client demo-client --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

status=0
compare() { # compare WHAT EXPECTED RESTORED
  local what=$1 expected=$2 got=$3
  if diff -r --no-dereference "$expected" "$got" >"$DEMO_DIR/diff.txt" 2>&1; then
    echo "diff -r: $what: no differences"
  else
    echo "diff -r: $what: DIFFERENCES:"; head -n 20 "$DEMO_DIR/diff.txt"; status=1
  fi
  if python3 tools/tree_compare.py --no-root "$expected" "$got" >"$DEMO_DIR/meta.txt"; then
    echo "metadata: $what: no differences (type, mode, owner, size, mtime ns, links, xattrs)"
  else
    echo "metadata: $what: DIFFERENCES:"; head -n 20 "$DEMO_DIR/meta.txt"; status=1
  fi
}

say "rsbackup restore (latest) and compare with the tree as it is now"
t=$(now)
"$RSBACKUP" restore --repo "$SERVER/repo" --session latest --client demo-client \
  --identity "$IDENTITY" --target "$RESTORED/latest"
T3=$(elapsed "$t")
compare "latest session" "$SRC" "$RESTORED/latest$SRC"

say "rsbackup restore (session $S1) and compare with the first version"
"$RSBACKUP" restore --repo "$SERVER/repo" --session "$S1" \
  --identity "$IDENTITY" --target "$RESTORED/first"
compare "first session" "$FIRST" "$RESTORED/first$SRC"

say "summary"
printf '%-32s %s\n' \
  "source (apparent)" "$(du -sb --apparent-size "$SRC" | cut -f1) bytes" \
  "repository on disk" "$(du -sb "$SERVER/repo" | cut -f1) bytes" \
  "first run" "$T1 s; rsync sent $SENT1" \
  "second run (few changes)" "$T2 s; rsync sent $SENT2" \
  "restore of latest" "$T3 s"
if [ "$status" -eq 0 ]; then
  echo "OK: pushed over ssh twice, both sessions restored byte for byte with their metadata"
else
  echo "FAILED: a restored tree differs from what was backed up (see above)" >&2
fi
exit "$status"
