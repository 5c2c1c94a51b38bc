#!/usr/bin/env bash
# Boots a stock Debian kernel under qemu (TCG) with the host's own / shared in read-only
# (9p + a tmpfs overlay), runs one command inside it from the project checkout, prints the
# command's output and exits with the command's exit status.
#
#   scripts/vm/run.sh [--timeout SECONDS] [--mem MiB] [--timestamps] [--keep] [--console] -- CMD [ARG...]
#   scripts/vm/run.sh --prepare        # install packages, fetch the kernel, build the initramfs; no boot
#
# Inside the guest: modules nbd (nbds_max=16), loop, dm-mod, dm-bufio, dm-snapshot,
# dm-log-writes, dm-flakey and ext4 are loaded (any other module of the kernel is loadable
# with modprobe), /proc /sys /dev /tmp /run are mounted, lo is up, DM_DISABLE_UDEV=1, and the
# command runs as root in the checkout with the project's Node 24 first on PATH. Variables
# NBDSNAP_* and CI of the caller's environment are passed through. NBDSNAP_VM_SHARE names a
# directory that the host keeps (with --keep or on failure) for artifacts.
#
# Exit status: the command's; 124 on timeout; 125 when the guest did not boot or did not
# report an exit status (the console log is printed); 2 on a usage error; 3 when the
# preparation (packages, kernel download) failed.
#
# Cache (kernel extracted with dpkg -x, never installed; initramfs): $NBDSNAP_VM_CACHE,
# default <checkout>/.cache/vm. It is safe to delete; it is rebuilt when missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${NBDSNAP_VM_CACHE:-$root/.cache/vm}

timeout_s=600
mem_mb=${NBDSNAP_VM_MEM:-3072}
cpu=${NBDSNAP_VM_CPU:-max}
# One vCPU: with two, qemu 7.2's multi-threaded TCG intermittently runs Node into unmapped
# JIT code (SIGSEGV in ~5% of node starts, measured); with one it did not happen, at the same speed.
smp=${NBDSNAP_VM_SMP:-1}
timestamps=0
keep=0
console=0
prepare_only=0

die() { echo "vm: error: $*" >&2; exit "${DIE_STATUS:-3}"; }
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

while [ $# -gt 0 ]; do
  case $1 in
    --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
    --mem) mem_mb=${2:?--mem needs MiB}; shift 2 ;;
    --timestamps) timestamps=1; shift ;;
    --keep) keep=1; shift ;;
    --console) console=1; shift ;;
    --prepare) prepare_only=1; shift ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "vm: unknown option: $1" >&2; usage ;;
  esac
done
if [ "$prepare_only" = 0 ] && [ $# -eq 0 ]; then usage; fi
[[ $timeout_s =~ ^[0-9]+$ ]] || DIE_STATUS=2 die "--timeout must be a whole number of seconds"

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, qemu's 9p export of /)"

# --- 1. host packages --------------------------------------------------------------------
# command -> Debian package; installed only when the command is missing.
need_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need depmod kmod
need modprobe kmod
need nbd-client nbd-client
need dmsetup dmsetup
need nbdkit nbdkit
need nbdinfo libnbd-bin
need mkfs.ext4 e2fsprogs
need fsfreeze util-linux
need apt-get apt
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
  need_pkgs+=(busybox-static)
fi
apt_updated=0
apt_update_once() {
  if [ "$apt_updated" = 0 ]; then
    echo "vm: apt-get update" >&2
    apt-get update -qq >&2 || die "apt-get update failed (no access to Debian's package archive?)"
    apt_updated=1
  fi
}
if [ ${#need_pkgs[@]} -gt 0 ]; then
  mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | sort -u)
  echo "vm: installing ${need_pkgs[*]}" >&2
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2 \
    || die "apt-get install ${need_pkgs[*]} failed"
fi
busybox=/bin/busybox
[ -x "$busybox" ] || die "busybox-static is installed but $busybox is missing"

node="$root/node_modules/node/bin/node"
[ -x "$node" ] || die "the project's Node ($node) is missing: run 'npm ci' in $root first"

# --- 2. kernel (cached, extracted, never installed) ----------------------------------------
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one preparation at a time; released when this script exits

kdir=$cache/kernel
fetch_kernel() {
  local t0 tmp meta dep
  t0=$(now)
  tmp=$(mktemp -d "$cache/.download.XXXXXX")
  # apt-get download as root warns about the unsandboxed _apt user when it cannot write here.
  chmod 755 "$tmp"
  echo "vm: downloading the kernel (linux-image-amd64 and the image it depends on)" >&2
  (cd "$tmp" && apt-get download linux-image-amd64 >/dev/null 2>"$tmp/err") || {
    apt_update_once
    (cd "$tmp" && apt-get download linux-image-amd64 >/dev/null 2>"$tmp/err") || {
      cat "$tmp/err" >&2; rm -rf "$tmp"
      die "cannot download linux-image-amd64 (apt-get download failed; see above)"; }
  }
  meta=$(ls "$tmp"/linux-image-amd64_*.deb)
  # Depends: linux-image-6.1.0-NN-amd64 (= VERSION) [| ...]
  dep=$(dpkg-deb -f "$meta" Depends | tr ',|' '\n\n' | sed 's/(.*//; s/ //g' | grep -m1 '^linux-image-[0-9]') \
    || { rm -rf "$tmp"; die "cannot find the kernel image package in linux-image-amd64's Depends"; }
  (cd "$tmp" && apt-get download "$dep" >/dev/null 2>"$tmp/err") || {
    cat "$tmp/err" >&2; rm -rf "$tmp"; die "cannot download $dep (apt-get download failed; see above)"; }
  rm -rf "$tmp/x"
  dpkg -x "$tmp/${dep}"_*.deb "$tmp/x" || { rm -rf "$tmp"; die "dpkg -x of $dep failed"; }
  local kver
  kver=$(ls "$tmp/x/lib/modules" | head -1)
  [ -n "$kver" ] && [ -f "$tmp/x/boot/vmlinuz-$kver" ] || { rm -rf "$tmp"; die "$dep has no vmlinuz/modules"; }
  depmod -b "$tmp/x" "$kver" || { rm -rf "$tmp"; die "depmod -b failed"; }
  echo "$kver" >"$tmp/x/.kver"
  rm -rf "$kdir"
  mv "$tmp/x" "$kdir"
  rm -rf "$tmp"
  echo "vm: kernel $kver cached in $kdir ($(elapsed "$t0" "$(now)") s)" >&2
}
[ -f "$kdir/.kver" ] || fetch_kernel
kver=$(cat "$kdir/.kver")
vmlinuz=$kdir/boot/vmlinuz-$kver
moddir=$kdir/lib/modules/$kver
[ -f "$vmlinuz" ] && [ -f "$moddir/modules.dep" ] || { rm -f "$kdir/.kver"; die "kernel cache $kdir is incomplete; run again to re-download"; }

# --- 3. initramfs: busybox + the modules needed to reach the 9p root ----------------------
early_mods=(virtio_pci 9pnet_virtio 9p overlay)
key=$( { echo "$kver"; printf '%s\n' "${early_mods[@]}"; cat "$here/init.sh"; sha256sum "$busybox"; } | sha256sum | cut -c1-16)
initrd=$cache/initramfs-$key.cpio.gz
build_initramfs() {
  local t0 stage m line
  t0=$(now)
  stage=$(mktemp -d "$cache/.initramfs.XXXXXX")
  mkdir -p "$stage"/{bin,sbin,proc,sys,dev,etc,lower,rw,newroot,share,lib/modules}
  cp "$busybox" "$stage/bin/busybox"
  for a in sh mount umount mkdir insmod cat echo sleep poweroff sync chroot ln rm dmesg ip; do
    ln -s busybox "$stage/bin/$a"
  done
  : >"$stage/etc/modules.early"
  for m in "${early_mods[@]}"; do
    # kmod prints the dependency chain in load order: "insmod /abs/path.ko [opts]" or "builtin x".
    modprobe -d "$kdir" -S "$kver" --show-depends "$m" >"$stage/deps" || die "cannot resolve module $m"
    while read -r line; do
      case $line in
        insmod\ *)
          local path=${line#insmod }; path=${path%% *}
          local rel=${path#"$kdir"}
          if ! grep -qxF "$rel" "$stage/etc/modules.early"; then
            mkdir -p "$stage$(dirname "$rel")"
            cp "$path" "$stage$rel"
            echo "$rel" >>"$stage/etc/modules.early"
          fi ;;
      esac
    done <"$stage/deps"
  done
  rm -f "$stage/deps"
  install -m 755 "$here/init.sh" "$stage/init"
  (cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  rm -rf "$stage"
  find "$cache" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "initramfs-$key.cpio.gz" -delete
  echo "vm: initramfs built: $initrd ($(du -k "$initrd" | cut -f1) KiB, $(elapsed "$t0" "$(now)") s)" >&2
}
[ -f "$initrd" ] || build_initramfs

flock -u 9
if [ "$prepare_only" = 1 ]; then
  echo "vm: ready: kernel $kver, $initrd" >&2
  exit 0
fi

# --- 4. boot ----------------------------------------------------------------------------
share=$(mktemp -d "${TMPDIR:-/tmp}/nbdsnap-vm.XXXXXX")
chmod 777 "$share"
qpid=
tailpid=
cleanup() {
  local st=$?
  [ -n "$qpid" ] && kill "$qpid" 2>/dev/null || true
  [ -n "$tailpid" ] && kill "$tailpid" 2>/dev/null || true
  if [ "$keep" = 0 ] && [ "$st" = 0 ]; then rm -rf "$share"; else echo "vm: guest files kept in $share" >&2; fi
}
trap cleanup EXIT

{
  printf 'MODDIR=%q\n' "$moddir"
  printf 'PROJECT=%q\n' "$root"
  printf 'MODULES=%q\n' "nbd:nbds_max=16 loop dm-mod dm-bufio dm-snapshot dm-log-writes dm-flakey ext4"
} >"$share/config"
{
  echo 'set -e'
  printf 'cd %q\n' "$root"
  printf 'export PATH=%q\n' "$root/node_modules/node/bin:$root/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  echo 'export HOME=/root TERM=dumb LANG=C.UTF-8 DM_DISABLE_UDEV=1 NBDSNAP_VM=1 NBDSNAP_VM_SHARE=/run/vmshare'
  while IFS= read -r -d '' kv; do
    case $kv in NBDSNAP_*=*|CI=*) printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}" ;; esac
  done < <(env -0)
  echo 'set +e'
  printf 'exec'; printf ' %q' "$@"; echo
} >"$share/cmd.sh"
: >"$share/output"

t0=$(now)
timeout --signal=TERM --kill-after=10 "$timeout_s" \
  qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu "$cpu" -m "$mem_mb" -smp "$smp" \
    -nodefaults -no-user-config -display none -no-reboot -nic none \
    -serial "file:$share/console.log" -monitor none \
    -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off ${NBDSNAP_VM_APPEND:-}" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$share,mount_tag=vmshare,security_model=none,multidevs=remap" \
    </dev/null >"$share/qemu.log" 2>&1 &
qpid=$!

# Stream the guest command's output as it arrives (the share is a host directory).
if [ "$timestamps" = 1 ]; then
  tail -n +1 -s 0.2 -F --pid="$qpid" "$share/output" 2>/dev/null | while IFS= read -r line || [ -n "$line" ]; do
    printf '[%6.1fs] %s\n' "$(elapsed "$t0" "$(now)")" "$line"
  done &
else
  tail -n +1 -s 0.2 -F --pid="$qpid" "$share/output" 2>/dev/null &
fi
tailpid=$!

set +e
wait "$qpid"
qst=$?
set -e
qpid=
wait "$tailpid" 2>/dev/null || true
tailpid=
t1=$(now)

[ "$console" = 1 ] && { echo "---- guest console ----" >&2; cat "$share/console.log" >&2; echo "----" >&2; }

boot_s=?
if [ -f "$share/started" ]; then
  boot_s=$(elapsed "$t0" "$(stat -c %.3Y "$share/started")")
fi
if [ "$qst" = 124 ] || [ "$qst" = 137 ]; then
  echo "vm: TIMEOUT: the guest did not finish within ${timeout_s}s (boot took ${boot_s}s); last console lines:" >&2
  tail -n 30 "$share/console.log" >&2 || true
  exit 124
fi
if [ ! -f "$share/rc" ]; then
  if [ -f "$share/error" ]; then echo "vm: guest init failed: $(cat "$share/error")" >&2; fi
  echo "vm: BOOT FAILURE: the guest reported no exit status (qemu exit $qst); qemu said:" >&2
  tail -n 20 "$share/qemu.log" >&2 || true
  echo "vm: last console lines:" >&2
  tail -n 40 "$share/console.log" >&2 || true
  exit 125
fi
rc=$(cat "$share/rc")
echo "vm: kernel $kver, boot ${boot_s}s, command $(elapsed "$(stat -c %.3Y "$share/started")" "$(stat -c %.3Y "$share/rc")")s, total $(elapsed "$t0" "$t1")s, exit status $rc" >&2
exit "$rc"
