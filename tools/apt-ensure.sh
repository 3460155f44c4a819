# Sourced by the tools/ scripts: apt_ensure PACKAGE... installs the Debian packages that are not
# already installed, without questions. Does nothing (no apt-get update) when all are present.

apt_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

apt_ensure() {
  local missing=() p
  for p in "$@"; do
    apt_installed "$p" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "$0: missing Debian packages: ${missing[*]}; run as root or install them" >&2
    return 1
  fi
  echo "$0: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >/dev/null
}
