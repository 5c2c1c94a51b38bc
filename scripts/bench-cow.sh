#!/usr/bin/env bash
# Copy-on-write benchmark (issue 11): nbdkit's cow filter, qemu-nbd with a qcow2 overlay (64 KiB
# clusters) and nbdsnap, in one run, on the same fio jobs (nbd ioengine, Unix socket, one
# connection), each on a fresh copy of one random base image. Prints a table with the absolute
# numbers, the ratios nbdsnap/nbdkit-cow and nbdsnap/qemu-qcow2, the issue's targets (informational:
# the script exits 0 unless something broke) and the server CPU time per I/O.
#
#   scripts/bench-cow.sh [--quick] [--size MIB] [--reads-runtime S] [--runs N] [--only LIST]
#                        [--dir DIR] [--nbdsnap-root DIR] [--keep]
#
#   --quick            256 MiB base and exports, 3 s reads (a smoke run)
#   --size MIB         size of the base image and the exports (default 1024)
#   --reads-runtime S  seconds of each 4k random-read job (default 6)
#   --runs N           repeat every group N times, report the median (default 1)
#   --only LIST        comma-separated groups (or row names, which select their group):
#                        cow      rows 1, 5, 6, 8 (first-write, rewrite, randread, cpu)
#                        cow8     row 2 (first-write-8)
#                        origin1  row 3 (origin-1)
#                        origin4  row 4 (origin-4)
#                        fill     rows 6b, 7, 7b (randread-base, fill, fill-8)
#   --dir DIR          put the scratch dir (mktemp -d) under DIR instead of /tmp
#   --nbdsnap-root DIR nbdsnap checkout to benchmark (default: this script's repository)
#   --keep             keep the scratch dir (server logs) at the end
#
# Jobs (fio --ioengine=nbd over a Unix socket, one connection; SIZE = the export size):
#   first write  --rw=write:60k --bs=4k --iodepth=32 --io_size=SIZE/16: one 4k write into every
#                64 KiB chunk, once over the whole export (16,384 writes for 1 GiB), fresh export
#   rewrite      the same again on the same export (every chunk already copied)
#   randread     --rw=randread --bs=4k --iodepth=32 --time_based --norandommap, on the export
#                after first write + rewrite (row 6) and on an untouched export (row 6b)
#   fill         --rw=write --bs=1M --iodepth=8, once over the whole export, fresh export
# nbdsnap snapshots are P stores with 128-sector (64 KiB) chunks unless the row says 8-sector.
# Servers alternate job by job; before every job all dirty data is synced and the base copy the
# server reads from is read into the page cache. Server CPU = utime+stime of the server process
# (/proc/PID/stat fields 14+15) across the fio job, divided by the number of I/Os.
#
# Needs nbdkit (cow filter), qemu-nbd and qemu-img, fio (nbd engine) and jq. Takes about
# 4-6 minutes at 1 GiB on an idle 2-CPU machine (mostly copying base images and syncing).
set -euo pipefail

usage() {
  sed -n '/^#   scripts\/bench-cow.sh/,/^#   --keep/p' "$0" | sed 's/^# \{0,3\}//' >&2
  exit 2
}

size_mib=1024
reads_runtime=''
runs=1
only=''
top_dir=/tmp
root=$(cd "$(dirname "$0")/.." && pwd)
snaproot=$root
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) size_mib=256; : "${reads_runtime:=3}"; shift ;;
    --size) size_mib="$2"; shift 2 ;;
    --reads-runtime) reads_runtime="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --dir) top_dir="$2"; shift 2 ;;
    --nbdsnap-root) snaproot=$(cd "$2" && pwd); shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    *) echo "bench-cow: unknown argument $1" >&2; usage ;;
  esac
done
: "${reads_runtime:=6}"
[[ "$size_mib" =~ ^[0-9]+$ ]] && [ "$size_mib" -ge 64 ] && [ $((size_mib % 64)) -eq 0 ] \
  || { echo "bench-cow: --size must be a multiple of 64 (MiB), at least 64" >&2; exit 2; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "bench-cow: --runs must be a positive integer" >&2; exit 2; }
[[ "$reads_runtime" =~ ^[1-9][0-9]*$ ]] || { echo "bench-cow: --reads-runtime must be a positive integer" >&2; exit 2; }

for tool in nbdkit qemu-nbd qemu-img fio jq; do
  command -v "$tool" >/dev/null || { echo "bench-cow: $tool is not installed" >&2; exit 1; }
done
nbdkit --filter=cow file --help >/dev/null 2>&1 || { echo "bench-cow: nbdkit has no cow filter" >&2; exit 1; }
fio --enghelp=nbd >/dev/null 2>&1 || { echo "bench-cow: fio has no nbd ioengine" >&2; exit 1; }
[ -x "$snaproot/bin/nbdsnap" ] || { echo "bench-cow: $snaproot/bin/nbdsnap not found" >&2; exit 1; }

# Groups to run, from --only (group names or row names).
all_groups="cow cow8 origin1 origin4 fill"
groups=''
if [ -z "$only" ]; then
  groups=$all_groups
else
  for w in ${only//,/ }; do
    case "$w" in
      cow|first-write|rewrite|randread|cpu|1|5|6|8) g=cow ;;
      cow8|first-write-8|2) g=cow8 ;;
      origin1|origin-1|3) g=origin1 ;;
      origin4|origin-4|4) g=origin4 ;;
      fill|fill-8|randread-base|6b|7|7b) g=fill ;;
      *) echo "bench-cow: --only: unknown group or row '$w' (groups: $all_groups)" >&2; exit 2 ;;
    esac
    case " $groups " in *" $g "*) ;; *) groups="$groups $g" ;; esac
  done
fi

mkdir -p "$top_dir"
dir=$(mktemp -d "$top_dir/nbdsnap-bench-cow-XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$keep" = 1 ] || [ "$rc" != 0 ]; then
    # Keep the logs, drop the big images.
    rm -f "$dir"/*.img "$dir"/*.qcow2 "$dir"/nbdsnap-data/cow/*.cow 2>/dev/null || true
    rm -rf "$dir"/tmp 2>/dev/null || true
    echo "bench-cow: logs kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench-cow: $*" >&2; }
die() { log "$*"; exit 1; }

# Forgets a PID we stopped ourselves (so cleanup never signals a reused PID).
forget_pid() {
  local keep_pids=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep_pids+=("$p"); done
  pids=("${keep_pids[@]}")
}
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}

# wait_socket PATH PID LOG: polls for the socket file while the server is alive.
wait_socket() {
  for _ in $(seq 300); do
    [ -S "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$3" >&2 || true; die "server $2 exited before $1 appeared"; }
    sleep 0.1
  done
  tail -n 20 "$3" >&2 || true
  die "$1 did not appear"
}

clk_tck=$(getconf CLK_TCK)
# utime+stime (clock ticks) of PID, all its threads (fields 14+15; parsed after the ")" of comm).
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat") || die "server $1 is gone"
  stat=${stat##*) }
  awk '{ print $12 + $13 }' <<<"$stat"
}

size_bytes=$((size_mib * 1024 * 1024))
first_writes=$((size_bytes / 65536))
cow_size="$((size_mib + size_mib / 8 + 16))M" # the whole export plus metadata (8-sector: ~0.4%)

base="$dir/base.img"
log "writing a $size_mib MiB base image with random data"
head -c "${size_mib}M" /dev/urandom >"$base"

# fresh_copy NAME: a fresh copy of the base (fully written, synced), prints its path.
fresh_copy() {
  local copy="$dir/$1.img"
  cp --reflink=never "$base" "$copy"
  sync "$copy"
  echo "$copy"
}

# ---- servers ---------------------------------------------------------------------------------
# Each started server is described by three globals indexed by a key: its URI, the PID whose CPU
# is counted, and the base copy it reads from (to be put in the page cache before each job).
declare -A uri spid sbase

start_nbdkit() { # key copy
  local sock="$dir/$1.sock"
  mkdir -p "$dir/tmp"
  TMPDIR="$dir/tmp" nbdkit -f -U "$sock" --filter=cow file "$2" 2>>"$dir/nbdkit.log" &
  local pid=$!
  pids+=("$pid")
  wait_socket "$sock" "$pid" "$dir/nbdkit.log"
  uri[$1]="nbd+unix:///?socket=$sock"; spid[$1]=$pid; sbase[$1]=$2
}

start_qemu() { # key copy
  local sock="$dir/$1.sock" overlay="$dir/$1.qcow2"
  qemu-img create -q -f qcow2 -F raw -b "$2" -o cluster_size=65536 "$overlay"
  qemu-nbd -k "$sock" -t -f qcow2 "$overlay" 2>>"$dir/qemu-nbd.log" &
  local pid=$!
  pids+=("$pid")
  wait_socket "$sock" "$pid" "$dir/qemu-nbd.log"
  uri[$1]="nbd+unix:///?socket=$sock"; spid[$1]=$pid; sbase[$1]=$2
}

stop_server() { # key
  stop_pid "${spid[$1]}"
  rm -f "$dir/$1.sock" "$dir/$1.qcow2" "${sbase[$1]}"
  unset "uri[$1]" "spid[$1]" "sbase[$1]"
}

snapdata="$dir/nbdsnap-data"
snapctl="$snapdata/control.sock"
daemon_pid=''
start_daemon() {
  # bin/nbdsnap execs node, so $! is the daemon's node process.
  NBDSNAP_LOG_LEVEL=warn "$snaproot/bin/nbdsnap" daemon --data-dir "$snapdata" 2>>"$dir/nbdsnap.log" &
  daemon_pid=$!
  pids+=("$daemon_pid")
  wait_socket "$snapctl" "$daemon_pid" "$dir/nbdsnap.log"
  wait_socket "$snapdata/nbd.sock" "$daemon_pid" "$dir/nbdsnap.log"
}
snap() { "$snaproot/bin/nbdsnap" "$@" --control "$snapctl" >>"$dir/nbdsnap-cli.log" 2>&1 \
  || { tail -n 5 "$dir/nbdsnap-cli.log" "$dir/nbdsnap.log" >&2; die "nbdsnap $* failed"; }; }

# nbdsnap objects made for a key: snames[key] = its snapshots, oname[key] = its origin.
declare -A snames oname
# start_nbdsnap_snapshot key copy chunk: origin "$key-o" on the copy, snapshot "$key" (P, chunk).
start_nbdsnap_snapshot() {
  snap origin add "$1-o" "$2"
  snap snapshot create "$1" --origin "$1-o" --size "$cow_size" --chunk-size "$3"
  oname[$1]="$1-o"; snames[$1]=$1
  uri[$1]="nbd+unix:///$1?socket=$snapdata/nbd.sock"; spid[$1]=$daemon_pid; sbase[$1]=$2
}
# start_nbdsnap_origin key copy nsnaps: origin "$key" on the copy with N snapshots (P, 128).
start_nbdsnap_origin() {
  snap origin add "$1" "$2"
  oname[$1]=$1; snames[$1]=''
  local i
  for i in $(seq "$3"); do
    snap snapshot create "$1-s$i" --origin "$1" --size "$cow_size" --chunk-size 128
    snames[$1]="${snames[$1]} $1-s$i"
  done
  uri[$1]="nbd+unix:///$1?socket=$snapdata/nbd.sock"; spid[$1]=$daemon_pid; sbase[$1]=$2
}
stop_nbdsnap() { # key: removes the snapshots and the origin made for it, and the base copy
  local name
  for name in ${snames[$1]}; do snap snapshot remove "$name"; done
  snap origin remove "${oname[$1]}"
  rm -f "${sbase[$1]}"
  unset "uri[$1]" "spid[$1]" "sbase[$1]" "snames[$1]" "oname[$1]"
}

# ---- jobs ------------------------------------------------------------------------------------
# Results: res[ROW:SERVER] and cpu[ROW:SERVER] hold one value per run (space-separated).
declare -A res cpu

# run_job ROW SERVER KEY KIND: KIND is write (first write / rewrite), randread or fill.
run_job() {
  local row=$1 server=$2 key=$3 kind=$4 args out t0 t1 ios value dirn=write
  case "$kind" in
    write) args=(--rw=write:60k --bs=4k --iodepth=32 --io_size=$((first_writes * 4))k) ;;
    randread) args=(--rw=randread --bs=4k --iodepth=32 --time_based --runtime="$reads_runtime"
                    --norandommap --randrepeat=0); dirn=read ;;
    fill) args=(--rw=write --bs=1M --iodepth=8) ;;
  esac
  sync
  cat "${sbase[$key]}" >/dev/null
  log "row $row: $server ($kind)"
  t0=$(cpu_ticks "${spid[$key]}")
  out=$(fio --name=cow --ioengine=nbd --uri="${uri[$key]}" --size="${size_mib}M" "${args[@]}" \
    --output-format=json 2>>"$dir/fio.log") || { tail -n 5 "$dir/fio.log" >&2; die "fio failed (row $row, $server)"; }
  t1=$(cpu_ticks "${spid[$key]}")
  out=$(sed -n '/^{/,$p' <<<"$out")
  [ "$(jq -r '.jobs[0].error' <<<"$out")" = 0 ] || die "fio reported an error (row $row, $server)"
  ios=$(jq -r ".jobs[0].$dirn.total_ios" <<<"$out")
  if [ "$kind" = write ] && [ "$ios" != "$first_writes" ]; then
    die "row $row, $server: fio did $ios writes, expected $first_writes"
  fi
  if [ "$kind" = fill ]; then
    value=$(jq -r ".jobs[0].write.bw_bytes / 1000000 | floor" <<<"$out")
  else
    value=$(jq -r ".jobs[0].$dirn.iops | floor" <<<"$out")
  fi
  res[$row:$server]="${res[$row:$server]:-} $value"
  cpu[$row:$server]="${cpu[$row:$server]:-} $(awk -v d=$((t1 - t0)) -v hz="$clk_tck" -v n="$ios" \
    'BEGIN { printf "%.1f", d / hz / n * 1e6 }')"
}

group_cow() { # rows 1, 5, 6 (and 8 from row 1's CPU)
  local c
  log "group cow: fresh exports (128-sector / 64 KiB chunks)"
  c=$(fresh_copy kit); start_nbdkit kit "$c"
  c=$(fresh_copy qemu); start_qemu qemu "$c"
  c=$(fresh_copy snap); start_nbdsnap_snapshot snap "$c" 128
  local s
  for s in kit qemu snap; do run_job 1 $s $s write; done
  for s in kit qemu snap; do run_job 5 $s $s write; done
  for s in kit qemu snap; do run_job 6 $s $s randread; done
  stop_server kit; stop_server qemu; stop_nbdsnap snap
}
group_cow8() { # row 2
  local c
  log "group cow8: fresh nbdsnap snapshot, 8-sector chunks"
  c=$(fresh_copy snap8); start_nbdsnap_snapshot snap8 "$c" 8
  run_job 2 snap snap8 write
  stop_nbdsnap snap8
}
group_origin1() { # row 3
  local c
  log "group origin1: fresh nbdsnap origin with 1 snapshot"
  c=$(fresh_copy orig1); start_nbdsnap_origin orig1 "$c" 1
  run_job 3 snap orig1 write
  stop_nbdsnap orig1
}
group_origin4() { # row 4
  local c
  log "group origin4: fresh nbdsnap origin with 4 snapshots"
  c=$(fresh_copy orig4); start_nbdsnap_origin orig4 "$c" 4
  run_job 4 snap orig4 write
  stop_nbdsnap orig4
}
group_fill() { # rows 6b, 7, 7b
  local c
  log "group fill: fresh exports"
  c=$(fresh_copy kitf); start_nbdkit kitf "$c"
  c=$(fresh_copy qemuf); start_qemu qemuf "$c"
  c=$(fresh_copy snapf); start_nbdsnap_snapshot snapf "$c" 128
  c=$(fresh_copy snapf8); start_nbdsnap_snapshot snapf8 "$c" 8
  run_job 6b kit kitf randread; run_job 6b qemu qemuf randread; run_job 6b snap snapf randread
  run_job 7 kit kitf fill; run_job 7 qemu qemuf fill; run_job 7 snap snapf fill
  run_job 7b snap snapf8 fill
  stop_server kitf; stop_server qemuf; stop_nbdsnap snapf; stop_nbdsnap snapf8
}

# ---- run -------------------------------------------------------------------------------------
node_version=$("$snaproot/node_modules/node/bin/node" --version 2>/dev/null || node --version)
snap_rev=$(git -C "$snaproot" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$snaproot" status --porcelain -- src bin 2>/dev/null)" ]; then
  snap_rev="$snap_rev + uncommitted changes in src/"
fi
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tools: $(nbdkit --version), $(qemu-nbd --version | head -n1), $(fio --version), node $node_version"
echo "nbdsnap: $snaproot at $snap_rev"
echo "setup: ${size_mib} MiB random base (fresh copy per server and fresh export), $first_writes first writes per export, reads ${reads_runtime}s, runs $runs, groups:$groups"

started=$SECONDS
start_daemon
for run in $(seq "$runs"); do
  [ "$runs" -gt 1 ] && log "run $run of $runs"
  for g in $groups; do "group_$g"; done
done
stop_pid "$daemon_pid"
leftover=$(find "$snapdata/cow" -type f 2>/dev/null | wc -l)
[ "$leftover" = 0 ] || log "warning: $leftover COW file(s) left in $snapdata/cow"
log "done in $((SECONDS - started)) s (plus the base image)"

# ---- report ----------------------------------------------------------------------------------
median() { # values... -> the median (lower middle for an even count), or empty
  [ $# -gt 0 ] || return 0
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
get() { median ${res[$1]:-}; }
getcpu() { median ${cpu[$1]:-}; }
ratio() { # a b -> a/b with 2 decimals, or "-"
  if [ -n "$1" ] && [ -n "$2" ] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
  else
    echo -
  fi
}
# check RATIO MIN LABEL -> "LABEL>=MIN PASS|FAIL" (nothing if the ratio is unknown)
check() {
  [ "$1" = - ] && { echo "$3>=$2 n/a"; return; }
  if awk -v r="$1" -v m="$2" 'BEGIN { exit !(r >= m) }'; then echo "$3>=$2 PASS"; else echo "$3>=$2 FAIL"; fi
}
or_dash() { if [ -n "$1" ]; then echo "$1"; else echo -; fi; }

row() { # id label unit kit qemu snap snap/kit snap/qemu target (rows not measured are left out)
  [ -n "$4$5$6" ] || [ "$1" = '#' ] || return 0
  printf '%-3s %-40s %-5s %11s %11s %11s %9s %10s  %s\n' "$1" "$2" "$3" "$(or_dash "$4")" \
    "$(or_dash "$5")" "$(or_dash "$6")" "$7" "$8" "$9"
}

echo
row '#' 'job' unit nbdkit-cow qemu-qcow2 nbdsnap snap/kit snap/qemu target
k1=$(get 1:kit); q1=$(get 1:qemu); s1=$(get 1:snap)
r1k=$(ratio "$s1" "$k1"); r1q=$(ratio "$s1" "$q1")
row 1 '4k first write QD32, 128-sector chunks' IOPS "$k1" "$q1" "$s1" "$r1k" "$r1q" \
  "$(check "$r1k" 2.0 kit) $(check "$r1q" 3.0 qemu)"
s2=$(get 2:snap)
row 2 '4k first write QD32, 8-sector chunks' IOPS '' '' "$s2" "$(ratio "$s2" "$k1")*" "$(ratio "$s2" "$q1")*" ''
s3=$(get 3:snap); r3k=$(ratio "$s3" "$k1")
row 3 'origin first write, 1 snapshot' IOPS '' '' "$s3" "$r3k*" "$(ratio "$s3" "$q1")*" \
  "$(check "$r3k" 2.0 'kit(row1)')"
s4=$(get 4:snap); r43=$(ratio "$s4" "$s3")
row 4 'origin first write, 4 snapshots' IOPS '' '' "$s4" "$(ratio "$s4" "$k1")*" "$(ratio "$s4" "$q1")*" \
  "$(check "$r43" 0.5 row3) (=$r43)"
k5=$(get 5:kit); q5=$(get 5:qemu); s5=$(get 5:snap); r5k=$(ratio "$s5" "$k5")
row 5 '4k rewrite QD32 (same blocks as row 1)' IOPS "$k5" "$q5" "$s5" "$r5k" "$(ratio "$s5" "$q5")" \
  "$(check "$r5k" 1.0 kit)"
k6=$(get 6:kit); q6=$(get 6:qemu); s6=$(get 6:snap); r6k=$(ratio "$s6" "$k6")
row 6 "4k randread QD32 ${reads_runtime}s, after rows 1+5" IOPS "$k6" "$q6" "$s6" "$r6k" "$(ratio "$s6" "$q6")" \
  "$(check "$r6k" 1.0 kit)"
k6b=$(get 6b:kit); q6b=$(get 6b:qemu); s6b=$(get 6b:snap); r6bk=$(ratio "$s6b" "$k6b")
row 6b "4k randread QD32 ${reads_runtime}s, untouched export" IOPS "$k6b" "$q6b" "$s6b" "$r6bk" \
  "$(ratio "$s6b" "$q6b")" "$(check "$r6bk" 1.0 kit) (info)"
k7=$(get 7:kit); q7=$(get 7:qemu); s7=$(get 7:snap); r7k=$(ratio "$s7" "$k7")
row 7 '1M fill QD8, 128-sector chunks' MB/s "$k7" "$q7" "$s7" "$r7k" "$(ratio "$s7" "$q7")" \
  "$(check "$r7k" 1.0 kit)"
s7b=$(get 7b:snap); r7bk=$(ratio "$s7b" "$k7")
row 7b '1M fill QD8, 8-sector chunks (nbdsnap)' MB/s '' '' "$s7b" "$r7bk*" "$(ratio "$s7b" "$q7")*" \
  "$(check "$r7bk" 0.7 'kit(row7)')"
ck=$(getcpu 1:kit); cq=$(getcpu 1:qemu); cs=$(getcpu 1:snap)
row 8 'server CPU per first write (row 1)' 'us/IO' "$ck" "$cq" "$cs" "$(ratio "$cs" "$ck")" "$(ratio "$cs" "$cq")" \
  '(lower is better)'
echo '* nbdsnap-only rows: ratios against the nbdkit-cow / qemu-qcow2 figures of row 1 (rows 2-4) or row 7 (7b)'

echo
echo "server CPU per I/O (utime+stime of the server process / I/Os, microseconds):"
printf '%-3s %-40s %11s %11s %11s\n' '#' job nbdkit-cow qemu-qcow2 nbdsnap
for r in 1 2 3 4 5 6 6b 7 7b; do
  [ -n "$(getcpu "$r:kit")$(getcpu "$r:qemu")$(getcpu "$r:snap")" ] || continue
  case "$r" in
    1) l='4k first write, 128-sector' ;; 2) l='4k first write, 8-sector' ;;
    3) l='origin first write, 1 snapshot' ;; 4) l='origin first write, 4 snapshots' ;;
    5) l='4k rewrite' ;; 6) l='4k randread, after rows 1+5' ;; 6b) l='4k randread, untouched' ;;
    7) l='1M fill, 128-sector' ;; 7b) l='1M fill, 8-sector' ;;
  esac
  printf '%-3s %-40s %11s %11s %11s\n' "$r" "$l" "$(or_dash "$(getcpu "$r:kit")")" \
    "$(or_dash "$(getcpu "$r:qemu")")" "$(or_dash "$(getcpu "$r:snap")")"
done
if [ "$runs" -gt 1 ]; then
  echo
  echo "all runs (IOPS or MB/s):"
  for k in $(printf '%s\n' "${!res[@]}" | sort -V); do echo "  $k:${res[$k]}"; done
fi
