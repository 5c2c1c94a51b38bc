#!/bin/sh
# Guest init (busybox sh, PID 1 of the initramfs built by scripts/vm/run.sh).
# Mounts the host's / (9p, read-only) under a tmpfs overlay, the read-write share "vmshare"
# (config, cmd.sh in; output, rc out), loads the test modules, runs /run/vmshare/cmd.sh chrooted
# into the overlay and powers off. Every failure is written to the share's "error" file.
export PATH=/bin:/sbin

fail() {
  echo "vm-init: $*" >/dev/console
  [ -d /share ] && echo "$*" >/share/error
  sync
  poweroff -f
  sleep 10
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

for m in $(cat /etc/modules.early); do
  insmod "$m" || fail "insmod $m failed"
done

p9="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$p9" vmshare /share || fail "cannot mount the vmshare 9p share"
mount -t 9p -o "$p9,ro" hostroot /lower || fail "cannot mount the host root (9p hostroot)"
mount -t tmpfs -o mode=755 tmpfs /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
  || fail "cannot mount the overlay root"

. /share/config
r=/newroot
kver=$(uname -r)
mount -t proc proc $r/proc || fail "proc"
mount -t sysfs sysfs $r/sys || fail "sysfs"
mount -t devtmpfs devtmpfs $r/dev || fail "devtmpfs"
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs tmpfs $r/dev/shm
# A checkout under /tmp (CI may clone there) must stay visible over the guest's own /tmp.
case "$PROJECT" in
  /tmp/*) mkdir -p /project && mount --bind "$r$PROJECT" /project || fail "cannot keep $PROJECT" ;;
esac
mount -t tmpfs -o mode=1777 tmpfs $r/tmp || fail "tmpfs /tmp"
case "$PROJECT" in
  /tmp/*) mkdir -p "$r$PROJECT" && mount --bind /project "$r$PROJECT" || fail "cannot bind $PROJECT back" ;;
esac
mount -t tmpfs -o mode=755 tmpfs $r/run || fail "tmpfs /run"
mkdir -p $r/run/vmshare $r/run/lock
mount --bind /share $r/run/vmshare || fail "bind vmshare"
mkdir -p "$r/lib/modules/$kver"
mount --bind "$r$MODDIR" "$r/lib/modules/$kver" || fail "cannot bind the modules from $MODDIR"
# The host's mtab may point at /proc/self/mounts already; make sure it does.
[ -L $r/etc/mtab ] || { rm -f $r/etc/mtab; ln -s /proc/self/mounts $r/etc/mtab; }

for spec in $MODULES; do
  mod=${spec%%:*}
  opts=
  [ "$mod" != "$spec" ] && opts=$(echo "${spec#*:}" | tr ',' ' ')
  chroot $r /sbin/modprobe "$mod" $opts || fail "modprobe $mod $opts failed"
done
chroot $r /sbin/ip link set lo up 2>/dev/null || ip link set lo up || fail "cannot bring lo up"
hostname nbdsnap-vm 2>/dev/null

echo started >/share/started
chroot $r /bin/bash /run/vmshare/cmd.sh </dev/null >/share/output 2>&1
echo $? >/share/rc.tmp
dmesg >/share/dmesg.log 2>/dev/null
mv /share/rc.tmp /share/rc
sync
umount /share 2>/dev/null
poweroff -f
