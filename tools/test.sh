#!/usr/bin/env bash
# The test suite on a fresh Debian machine, as root: installs the packages the tests use, then
# cargo fmt --check, clippy with warnings as errors, and every test. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tools/apt-ensure.sh

# rsync, sshd and ssh: the push path; python3-aiosmtpd: a real SMTP server for mailed reports;
# attr: setfattr/getfattr for xattr tests; sqlite3: inspecting and damaging index.db in tests;
# chromium: rendering the status page headless; dpkg-dev, binutils, lintian, systemd, man-db:
# building, checking and installing the Debian package (tools/deb.sh, tests/cli/package.rs;
# systemd-analyze verifies the units, and runs man for their Documentation= pages); fuse3:
# fusermount3 for the mount tests (diffutils: diff -r through the mount).
apt_ensure rsync openssh-server openssh-client python3-aiosmtpd attr acl libcap2-bin util-linux bsdutils sqlite3 ca-certificates \
  chromium dpkg-dev binutils lintian systemd man-db fuse3 diffutils

# The mount tests need the kernel's FUSE device. A fresh machine or container may not have the
# node yet although its kernel has FUSE: load the module and make the node (major 10, minor 229,
# as udev would). Where the kernel has no FUSE the mount tests fail and say so.
if [ ! -e /dev/fuse ]; then
  modprobe fuse 2>/dev/null || true
  [ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229 || echo "test.sh: cannot make /dev/fuse" >&2
fi

# Every step runs even when an earlier one failed, so one run shows every problem.
failed=()
step() {
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*" >&2
  if "$@"; then
    echo "== $name: ok in $((SECONDS - start)) s" >&2
  else
    echo "== $name: FAILED after $((SECONDS - start)) s" >&2
    failed+=("$name")
  fi
}

step fmt cargo fmt --all --check
step clippy cargo clippy --all-targets -- -D warnings
step test cargo test --all-targets
if ((${#failed[@]})); then
  echo "== failed: ${failed[*]}" >&2
  exit 1
fi
echo "== all checks passed" >&2
