#!/usr/bin/env bash
# First step of `npm test`: makes sure that what the tests run is on this machine. The project's
# Node 24 (from `npm install`), and the Debian packages of the real NBD clients and system tools
# the tests drive. Missing packages are installed when run as root on Debian (apt-get, no
# prompts, one line of output); otherwise it prints what to install and fails. Silent when all
# is there. (The VM suite, scripts/vm-test.sh, installs its own packages.)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "ensure-test-tools: $*" >&2; }

# npm runs the test steps with node_modules/.bin, which holds the project's Node, first on PATH.
if [ ! -x node_modules/node/bin/node ]; then
  say "the project's Node 24 (node_modules/node) is not installed: run 'npm install' first"
  exit 1
fi

# Debian package: the commands the tests run from it.
packages=(
  "libnbd-bin: nbdinfo nbdcopy nbdfuse"
  "python3-libnbd: nbdsh"
  "qemu-utils: qemu-io qemu-img"
  "fio: fio"
  "fuse3: fusermount3"
  "e2fsprogs: mkfs.ext4 e2fsck"
  "util-linux: fsfreeze"
  "mount: losetup mount umount"
  "nbd-client: nbd-client"
  "systemd: systemd-analyze systemd-notify"
  "iproute2: ss"
  "openssl: openssl"
  "prometheus: promtool"
)

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  # Not Debian: look for the commands themselves.
  PATH="$PATH:/usr/sbin:/sbin"
  missing=()
  for entry in "${packages[@]}"; do
    for cmd in ${entry#*:}; do
      command -v "$cmd" >/dev/null || missing+=("$cmd (Debian: ${entry%%:*})")
    done
  done
  if ((${#missing[@]} > 0)); then
    say "the tests need these commands, not found on PATH: $(printf '%s, ' "${missing[@]}" | sed 's/, $//')"
    say "install them with this system's package manager"
    exit 1
  fi
  exit 0
fi

missing_packages() {
  local entry pkg status
  for entry in "${packages[@]}"; do
    pkg=${entry%%:*}
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == *" ok installed" ]] || echo "$pkg"
  done
}

mapfile -t missing < <(missing_packages)
((${#missing[@]} == 0)) && exit 0

install="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
  say "the tests need Debian packages that are not installed: ${missing[*]}. Install them with:"
  echo "  sudo apt-get update && sudo $install" >&2
  exit 1
fi

say "installing the Debian packages the tests need: ${missing[*]}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -q -y --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"; } \
  </dev/null >"$log" 2>&1; then
  cat "$log" >&2
  say "'apt-get update && $install' failed (output above)"
  exit 1
fi
mapfile -t still < <(missing_packages)
if ((${#still[@]} > 0)); then
  cat "$log" >&2
  say "still not installed after apt-get: ${still[*]}"
  exit 1
fi
