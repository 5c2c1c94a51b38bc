#!/usr/bin/env bash
# Benchmark nbdsnap's NBD server against `nbdkit file` on the same 1 GiB file, with the same fio
# jobs (nbd ioengine, Unix socket), and print a table with the ratio nbdsnap/nbdkit.
#
#   scripts/bench.sh [--runtime SECONDS] [--only JOBNAME]
#
# Needs nbdkit and fio (with the nbd engine). Takes about 2 * 5 * (runtime + 2) seconds.
set -euo pipefail

runtime=10
only=''
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) runtime="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "usage: $0 [--runtime SECONDS] [--only JOBNAME]" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
for tool in nbdkit fio jq; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/nbdsrv-bench-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

image="$dir/disk.img"
echo "bench: writing a 1 GiB image with random data" >&2
head -c 1G /dev/urandom >"$image"

wait_socket() {
  for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
  echo "bench: $1 did not appear" >&2; exit 1
}

nbdkit -f -U "$dir/nbdkit.sock" file "$image" 2>"$dir/nbdkit.log" &
pids+=($!)
NBDSNAP_LOG_LEVEL=warn "$root/bin/nbdsnap" serve "$image" --socket "$dir/nbdsnap.sock" 2>"$dir/nbdsnap.log" &
pids+=($!)
wait_socket "$dir/nbdkit.sock"
wait_socket "$dir/nbdsnap.sock"

# name rw bs iodepth metric(iops|bw)
jobs=(
  "randread-4k-qd1 randread 4k 1 iops"
  "randread-4k-qd32 randread 4k 32 iops"
  "randwrite-4k-qd32 randwrite 4k 32 iops"
  "read-1m-qd8 read 1m 8 bw"
  "write-1m-qd8 write 1m 8 bw"
)

# Prints IOPS (for iops jobs) or MB/s (for bw jobs) of one fio run.
run_fio() {
  local server=$1 rw=$2 bs=$3 depth=$4 metric=$5 out
  out=$(fio --name=bench --ioengine=nbd --uri="nbd+unix:///?socket=$dir/$server.sock" \
    --rw="$rw" --bs="$bs" --iodepth="$depth" --size=1G --time_based --runtime="$runtime" \
    --ramp_time=1 --norandommap --randrepeat=0 --output-format=json 2>/dev/null | sed -n "/^{/,\$p")
  local dirn=read
  case "$rw" in *write*) dirn=write ;; esac
  if [ "$metric" = iops ]; then
    jq -r ".jobs[0].$dirn.iops | floor" <<<"$out"
  else
    jq -r ".jobs[0].$dirn.bw_bytes / 1000000 | floor" <<<"$out"
  fi
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tools: $(nbdkit --version), $(fio --version), node $("$root/node_modules/node/bin/node" --version 2>/dev/null || node --version); fio runtime ${runtime}s per job"
printf '%-20s %14s %14s %7s\n' job nbdsnap nbdkit ratio
for job in "${jobs[@]}"; do
  read -r name rw bs depth metric <<<"$job"
  [ -n "$only" ] && [ "$only" != "$name" ] && continue
  kit=$(run_fio nbdkit "$rw" "$bs" "$depth" "$metric")
  snap=$(run_fio nbdsnap "$rw" "$bs" "$depth" "$metric")
  unit=IOPS
  [ "$metric" = bw ] && unit=MB/s
  ratio=$(jq -n "$snap / $kit * 100 | floor / 100")
  printf '%-20s %9s %-4s %9s %-4s %7s\n' "$name" "$snap" "$unit" "$kit" "$unit" "$ratio"
done
