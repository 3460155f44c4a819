#!/usr/bin/env bash
# Builds the Debian package with Debian's own tools (dpkg-deb, dpkg-shlibdeps):
#   tools/deb.sh [--profile PROFILE] [--binary FILE] [--out DIR]
# builds `cargo build --profile PROFILE` (default release) and writes
# OUT/rsbackup_<version>_<arch>.deb (default target/debian). --binary packages a binary that is
# already built instead (the package test passes the one under test), stripped on the way in.
# Man pages and completions come from the binary itself (hidden generate-man and
# generate-completions commands), so they always match its --help.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

profile=release binary="" out=$ROOT/target/debian
while (($#)); do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "$0: unknown argument $1 (expected --profile, --binary or --out)" >&2; exit 2 ;;
  esac
done

. tools/apt-ensure.sh
apt_ensure dpkg-dev binutils

if [ -z "$binary" ]; then
  cargo build --profile "$profile" --bin rsbackup
  dir=$profile
  [ "$profile" = dev ] && dir=debug
  binary=$ROOT/target/$dir/rsbackup
fi
[ -x "$binary" ] || { echo "$0: $binary is not an executable" >&2; exit 1; }

upstream=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$upstream" ] || { echo "$0: no version in Cargo.toml" >&2; exit 1; }
version=$upstream-1
arch=$(dpkg --print-architecture)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg=$work/root
umask 022
mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/share/man/man1" \
  "$pkg/usr/share/doc/rsbackup/examples" "$pkg/lib/systemd/system" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
  "$pkg/usr/share/fish/vendor_completions.d"

install -m 755 "$binary" "$pkg/usr/bin/rsbackup"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$pkg/usr/bin/rsbackup"
bin=$pkg/usr/bin/rsbackup

"$bin" generate-man "$work/man"
for page in "$work"/man/*.1; do
  gzip -9n <"$page" >"$pkg/usr/share/man/man1/$(basename "$page").gz"
done
"$bin" generate-completions bash "$work/completions"
"$bin" generate-completions zsh "$work/completions"
"$bin" generate-completions fish "$work/completions"
install -m 644 "$work/completions/rsbackup.bash" "$pkg/usr/share/bash-completion/completions/rsbackup"
install -m 644 "$work/completions/_rsbackup" "$pkg/usr/share/zsh/vendor-completions/_rsbackup"
install -m 644 "$work/completions/rsbackup.fish" "$pkg/usr/share/fish/vendor_completions.d/rsbackup.fish"

doc=$pkg/usr/share/doc/rsbackup
install -m 644 README.md docs/*.md "$doc/"
install -m 644 packaging/examples/*.toml "$doc/examples/"
install -m 644 packaging/debian/copyright "$doc/copyright"
sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")/" \
  packaging/debian/changelog | gzip -9n >"$doc/changelog.Debian.gz"
# As dh_compress does: documents over 4 KiB are compressed, except the copyright file.
find "$doc" -maxdepth 1 -name '*.md' -size +4k -exec gzip -9n {} +
install -m 644 packaging/systemd/*.service packaging/systemd/*.timer "$pkg/lib/systemd/system/"

install -m 755 packaging/debian/postinst packaging/debian/postrm "$pkg/DEBIAN/"

# Shared-library dependencies as dpkg-shlibdeps finds them (it wants a debian/control).
mkdir -p "$work/src/debian"
printf 'Source: rsbackup\n\nPackage: rsbackup\nArchitecture: any\n' >"$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O "$bin" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "$0: dpkg-shlibdeps found no dependencies for $bin" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@SHLIBS@/$shlibs/" \
  packaging/debian/control.in >"$pkg/DEBIAN/control"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
  xargs md5sum) >"$pkg/DEBIAN/md5sums"
chmod 644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/rsbackup_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
