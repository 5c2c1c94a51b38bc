#!/usr/bin/env bash
# Live-restart benchmark (issue 14): how long clients wait while `nbdsnap restart` hands the
# daemon over, with a catalog of SNAPS snapshots holding EXCEPTIONS exceptions in total.
#
#   scripts/bench-restart.sh [--snapshots N] [--exceptions N] [--restarts N] [--dir DIR] [--keep]
#
#   --snapshots N    P snapshots of one 1 GiB origin (default 10)
#   --exceptions N   exceptions over all of them (default 1000000), 4 KiB chunks; the COW files
#                    are written in the kernel's format by scripts/bench-make-cow.ts (sparse data)
#   --restarts N     live restarts during the measured run (default 5)
#
# Two fio runs of the same length (nbd engine, Unix socket, QD1: 4k random reads on the origin,
# 4k random writes on the first snapshot): a baseline, and one with N `restart --wait --json`
# spaced through it. Reported: each restart's pause (the daemon's pauseMs: first connection
# paused -> successor serving), the wall time of `nbdsnap restart --wait` (successor start
# included), and the longest request latency fio saw in each run (the target: < 500 ms).
set -euo pipefail
snaps=10
exceptions=1000000
restarts=5
top_dir=/tmp
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --snapshots) snaps="$2"; shift 2 ;;
    --exceptions) exceptions="$2"; shift 2 ;;
    --restarts) restarts="$2"; shift 2 ;;
    --dir) top_dir="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) sed -n '/^#   scripts\/bench-restart.sh/,/^#   --restarts/p' "$0" | sed 's/^# \{0,3\}//' >&2; exit 2 ;;
  esac
done
for tool in fio jq; do command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }; done

root=$(cd "$(dirname "$0")/.." && pwd)
node="$root/node_modules/node/bin/node"
nbdsnap="$root/bin/nbdsnap"
work=$(mktemp -d "$top_dir/bench-restart.XXXXXX")
export NBDSNAP_CONTROL="$work/data/control.sock"
cleanup() {
  # The daemon's pid changes at every restart: ask it which one serves now.
  pid=$("$nbdsnap" status --json >/dev/null 2>&1 && "$node" -e "
    const { callDaemon } = await import('$root/src/control/client.ts');
    console.log((await callDaemon(process.env.NBDSNAP_CONTROL, { op: 'daemon.info' })).pid);" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "${first:-}" ] && kill "$first" 2>/dev/null || true
  sleep 1
  if [ "$keep" = 1 ]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

per=$((exceptions / snaps))
origin_chunks=262144 # 1 GiB of 4 KiB chunks
[ "$per" -le "$origin_chunks" ] || { echo "bench: at most $origin_chunks exceptions per snapshot" >&2; exit 2; }
truncate -s 1G "$work/origin.img"
echo "bench: writing $snaps COW files of $per exceptions each" >&2
for i in $(seq "$snaps"); do "$node" "$root/scripts/bench-make-cow.ts" "$work/s$i.cow" 8 "$per" "$origin_chunks"; done

"$nbdsnap" daemon --data-dir "$work/data" --log-level info >"$work/daemon.log" 2>&1 &
first=$!
for _ in $(seq 100); do [ -S "$NBDSNAP_CONTROL" ] && break; sleep 0.1; done
"$nbdsnap" origin add o "$work/origin.img" >/dev/null
for i in $(seq "$snaps"); do "$nbdsnap" snapshot create "s$i" --origin o --cow "$work/s$i.cow" --persistent P --chunk-size 8 >/dev/null; done
total=$("$nbdsnap" snapshot list --json | jq '[.[].allocatedSectors] | add / 8 | floor')
echo "bench: $snaps snapshots, $total chunks allocated in total (exceptions and metadata)" >&2

run_fio() { # $1 = output json, $2 = seconds
  local sock="$work/data/nbd.sock"
  fio --output-format=json --output="$1" --ioengine=nbd --bs=4k --iodepth=1 --time_based --runtime="$2" \
    --name=origin-read --uri="nbd+unix:///o?socket=$sock" --rw=randread --size=1g \
    --name=snap-write --uri="nbd+unix:///s1?socket=$sock" --rw=randwrite --size=64m >/dev/null
}
max_lat_ms() { jq '[.jobs[] | (.read.clat_ns.max, .write.clat_ns.max)] | max / 1e6 | . * 10 | round / 10' "$1"; }

seconds=$((4 + restarts * 4))
echo "bench: baseline fio run, $seconds s" >&2
run_fio "$work/base.json" "$seconds"
echo "bench: fio run with $restarts live restarts, $seconds s" >&2
run_fio "$work/restarts.json" "$seconds" &
fio_pid=$!
sleep 3
pauses=()
walls=()
for i in $(seq "$restarts"); do
  t0=$(date +%s%N)
  r=$("$nbdsnap" restart --wait --json)
  t1=$(date +%s%N)
  pauses+=("$(echo "$r" | jq .pauseMs)")
  walls+=("$(( (t1 - t0) / 1000000 ))")
  echo "bench: restart $i: $(echo "$r" | jq -c '{pid, connections, pauseMs}')" >&2
  sleep 3
done
wait "$fio_pid"

errs=$(jq '[.jobs[].error] | add' "$work/restarts.json")
printf '\n| %s | %s |\n|---|---:|\n' "live restart, $snaps snapshots, $total exceptions" "value"
printf '| pause per restart (daemon: pause -> successor serves), ms | %s |\n' "$(IFS=' '; echo "${pauses[*]}")"
printf '| restart --wait wall time (successor start included), ms | %s |\n' "$(IFS=' '; echo "${walls[*]}")"
printf '| longest request latency, baseline run, ms | %s |\n' "$(max_lat_ms "$work/base.json")"
printf '| longest request latency, run with restarts, ms | %s |\n' "$(max_lat_ms "$work/restarts.json")"
printf '| fio errors in the run with restarts | %s |\n' "$errs"
