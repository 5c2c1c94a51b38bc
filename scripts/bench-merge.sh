#!/usr/bin/env bash
# Merge benchmark (issue 13): how fast `nbdsnap snapshot merge` puts a snapshot's exceptions back
# into its origin, idle and under a fio write load on the origin, as a ratio against nbdcopy
# copying the same number of bytes between two files in the same run (the target: an idle merge
# at >= 0.5 of that copy rate).
#
#   scripts/bench-merge.sh [--size MIB] [--chunk SECTORS] [--load-runtime S] [--dir DIR] [--keep]
#
#   --size MIB         bytes of exceptions to merge, and of the origin (default 1024)
#   --chunk SECTORS    the snapshot's chunk size (default 8, LVM's)
#   --dir DIR          put the scratch dir under DIR instead of /tmp
#   --keep             keep the scratch dir (daemon logs) at the end
#
# Each merge: a fresh daemon, an origin of random data, a P snapshot written whole with other
# random data (nbdcopy into the snapshot export: SIZE of exceptions), everything synced and the
# page cache dropped; then `snapshot merge --wait` runs, timed from the daemon's log (merge started
# to merge complete, in the daemon's clock). The load
# run has fio (nbd engine, Unix socket) doing 4k random writes at depth 4 on the origin export
# during the whole merge. The copy baseline is nbdcopy of a SIZE file to a new file, after the
# same sync and cache drop, with a final sync (the merge flushes the origin before every commit).
# Needs nbdcopy, fio and jq; drops caches (root) if it can.
set -euo pipefail

size_mib=1024
chunk=8
top_dir=/tmp
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size_mib="$2"; shift 2 ;;
    --chunk) chunk="$2"; shift 2 ;;
    --dir) top_dir="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) sed -n '/^#   scripts\/bench-merge.sh/,/^#   --keep/p' "$0" | sed 's/^# \{0,3\}//' >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
node="$root/node_modules/node/bin/node"
work=$(mktemp -d "$top_dir/bench-merge.XXXXXX")
daemon_pid=''
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  [ "$keep" = 1 ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

drop_caches() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}

now() { date +%s.%N; }

calc() { awk "BEGIN { print $1 }"; }

cli() { NBDSNAP_CONTROL="$work/data/control.sock" "$root/bin/nbdsnap" "$@"; }

start_daemon() {
  rm -rf "$work/data"
  "$node" "$root/src/cli/main.ts" daemon --data-dir "$work/data" --log-level info 2>"$work/daemon-$1.log" &
  daemon_pid=$!
  for _ in $(seq 200); do cli origin list >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "daemon did not start" >&2; exit 1
}

stop_daemon() {
  kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true; daemon_pid=''
}

uri() { echo "nbd+unix:///$1?socket=$work/data/nbd.sock"; }

head -c "${size_mib}M" /dev/urandom > "$work/random-a"
head -c "${size_mib}M" /dev/urandom > "$work/random-b"

# One merge; $1 = idle|load. Prints the seconds it took.
merge_once() {
  start_daemon "$1"
  cp "$work/random-a" "$work/origin.img"
  cli origin add base "$work/origin.img" >/dev/null
  cli snapshot create snap --origin base --size "$((size_mib + size_mib / 8 + 16))M" --chunk-size "$chunk" >/dev/null
  nbdcopy "$work/random-b" "$(uri snap)"
  drop_caches
  local fio_pid=''
  if [ "$1" = load ]; then
    fio --name=load --ioengine=nbd --uri="$(uri base)" --rw=randwrite --bs=4k --iodepth=4 \
      --time_based --runtime=3600 --output-format=json >"$work/fio.json" 2>"$work/fio.err" &
    fio_pid=$!
    sleep 1
  fi
  cli snapshot merge snap --wait >/dev/null
  if [ -n "$fio_pid" ]; then kill -INT "$fio_pid"; wait "$fio_pid" || true; fi
  stop_daemon
  # From the daemon's own log (ms timestamps): merge started -> merge complete, free of CLI polling.
  local t0 t1
  t0=$(jq -r 'select(.msg == "merge started") | .time' "$work/daemon-$1.log")
  t1=$(jq -r 'select(.msg == "merge complete") | .time' "$work/daemon-$1.log")
  calc "($t1 - $t0) / 1000"
}

copy_once() {
  rm -f "$work/copy-dst"
  drop_caches
  local t0 t1
  t0=$(now)
  nbdcopy "$work/random-b" "$work/copy-dst"
  sync
  t1=$(now)
  calc "$t1 - $t0"
}

copy_s=$(copy_once)
idle_s=$(merge_once idle)
load_s=$(merge_once load)
load_iops=$(sed -n '/^{/,$p' "$work/fio.json" | jq '.jobs[0].write.iops' 2>/dev/null || echo 0)

rate() { calc "$size_mib / $1"; }
printf 'merge of %d MiB of exceptions (%d-sector chunks) vs nbdcopy of %d MiB file to file\n' "$size_mib" "$chunk" "$size_mib"
printf '%-28s %10s %12s %8s\n' job seconds 'MiB/s' ratio
printf '%-28s %10.2f %12.1f %8s\n' 'nbdcopy file->file' "$copy_s" "$(rate "$copy_s")" 1.00
printf '%-28s %10.2f %12.1f %8.2f\n' 'merge, idle' "$idle_s" "$(rate "$idle_s")" "$(calc "$copy_s / $idle_s")"
printf '%-28s %10.2f %12.1f %8.2f\n' 'merge, fio 4k QD4 on origin' "$load_s" "$(rate "$load_s")" "$(calc "$copy_s / $load_s")"
printf 'origin writes during the loaded merge: %.0f IOPS\n' "$load_iops"
printf 'target: idle merge >= 0.50 of the copy rate\n'
