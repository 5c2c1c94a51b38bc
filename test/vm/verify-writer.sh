#!/bin/bash
# Guest-side writer for the live-restart VM test: round after round, writes a 256 KiB file into
# DIR with O_DIRECT + fsync (so it reaches the NBD device), reads it back with O_DIRECT and
# compares. Writes the number of completed rounds to PROGRESS; stops when STOP exists. Exits 1
# (with the failing command's message on stderr) at the first error of any kind.
set -u
dir=$1 stop=$2 progress=$3
src=$(mktemp -d)
for k in 0 1 2 3 4 5 6; do head -c 262144 /dev/urandom > "$src/$k" || exit 1; done
i=0
while [ ! -e "$stop" ]; do
  f="$dir/w$((i % 16))"
  s="$src/$((i % 7))"
  dd if="$s" of="$f" bs=256k oflag=direct conv=fsync status=none || { echo "round $i: write of $f failed" >&2; exit 1; }
  dd if="$f" bs=256k iflag=direct status=none | cmp -s - "$s" || { echo "round $i: $f reads back differently" >&2; exit 1; }
  i=$((i + 1))
  echo "$i" > "$progress"
done
rm -rf "$src"
