# Shared by scripts/bench.sh and scripts/bench-tls.sh (sourced, not run): a temp dir cleaned up
# on exit, a 1 GiB random image, the fio jobs (nbd ioengine) and the table comparing two servers.
# The caller sets `root` (the checkout), passes its arguments to bench_args, starts its servers
# (their PIDs in `pids`), and defines `uri SERVER`, which prints the NBD URI fio uses for it.
# shellcheck shell=bash disable=SC2154  # root is the caller's

# [--runtime SECONDS] [--only JOBNAME] -> `runtime` (default 10) and `only`.
bench_args() {
  runtime=10
  only=''
  while [ $# -gt 0 ]; do
    case "$1" in
      --runtime) runtime="$2"; shift 2 ;;
      --only) only="$2"; shift 2 ;;
      *) echo "usage: $0 [--runtime SECONDS] [--only JOBNAME]" >&2; exit 2 ;;
    esac
  done
}

bench_need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
  done
}

bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}

# Sets `dir` (a new temp dir named after $1) and `pids`; everything goes when the script exits.
bench_start() {
  dir=$(mktemp -d "/tmp/$1-XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}

# Prints the path of a new 1 GiB file of random data in $dir.
bench_image() {
  echo "bench: writing a 1 GiB image with random data" >&2
  head -c 1G /dev/urandom >"$dir/disk.img"
  echo "$dir/disk.img"
}

wait_socket() {
  for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done
  echo "bench: $1 did not appear" >&2; exit 1
}

# name rw bs iodepth metric(iops|bw)
bench_jobs=(
  "randread-4k-qd1 randread 4k 1 iops"
  "randread-4k-qd32 randread 4k 32 iops"
  "randwrite-4k-qd32 randwrite 4k 32 iops"
  "read-1m-qd8 read 1m 8 bw"
  "write-1m-qd8 write 1m 8 bw"
)

# Prints IOPS (for iops jobs) or MB/s (for bw jobs) of one fio run against server $1.
run_fio() {
  local server=$1 rw=$2 bs=$3 depth=$4 metric=$5 out
  out=$(fio --name=bench --ioengine=nbd --uri="$(uri "$server")" \
    --rw="$rw" --bs="$bs" --iodepth="$depth" --size=1G --time_based --runtime="$runtime" \
    --ramp_time=1 --norandommap --randrepeat=0 --output-format=json 2>/dev/null | sed -n "/^{/,\$p")
  [ -n "$out" ] || { echo "bench: fio failed against $server ($(uri "$server"))" >&2; exit 1; }
  local dirn=read
  case "$rw" in *write*) dirn='write' ;; esac
  if [ "$metric" = iops ]; then
    jq -r ".jobs[0].$dirn.iops | floor" <<<"$out"
  else
    jq -r ".jobs[0].$dirn.bw_bytes / 1000000 | floor" <<<"$out"
  fi
}

# The machine and tool versions, first lines of every report; $1 is added to the tools line.
bench_machine() {
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "tools: $(nbdkit --version), $(fio --version), node $("$root/node_modules/node/bin/node" --version 2>/dev/null || node --version)$1; fio runtime ${runtime}s per job"
}

# One row per job: server $1 (nbdsnap), server $2 (nbdkit), ratio $1/$2; $3/$4 label the columns.
bench_table() {
  local name rw bs depth metric kit snap unit ratio
  printf '%-20s %14s %14s %7s\n' job "${3:-$1}" "${4:-$2}" ratio
  for job in "${bench_jobs[@]}"; do
    read -r name rw bs depth metric <<<"$job"
    [ -n "$only" ] && [ "$only" != "$name" ] && continue
    kit=$(run_fio "$2" "$rw" "$bs" "$depth" "$metric")
    snap=$(run_fio "$1" "$rw" "$bs" "$depth" "$metric")
    unit=IOPS
    [ "$metric" = bw ] && unit=MB/s
    ratio=$(jq -n "$snap / $kit * 100 | floor / 100")
    printf '%-20s %9s %-4s %9s %-4s %7s\n' "$name" "$snap" "$unit" "$kit" "$unit" "$ratio"
  done
}
