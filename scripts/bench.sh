#!/usr/bin/env bash
# Benchmark nbdsnap's NBD server against `nbdkit file` on the same 1 GiB file, with the same fio
# jobs (nbd ioengine, Unix socket), and print a table with the ratio nbdsnap/nbdkit.
#
#   scripts/bench.sh [--runtime SECONDS] [--only JOBNAME]
#
# Needs nbdkit and fio (with the nbd engine). Takes about 2 * 5 * (runtime + 2) seconds.
# The jobs and the table are in scripts/bench-lib.sh (shared with scripts/bench-tls.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
bench_args "$@"
bench_need nbdkit fio jq
bench_start nbdsrv-bench
image=$(bench_image)

nbdkit -f -U "$dir/nbdkit.sock" file "$image" 2>"$dir/nbdkit.log" &
pids+=($!)
NBDSNAP_LOG_LEVEL=warn "$root/bin/nbdsnap" serve "$image" --socket "$dir/nbdsnap.sock" 2>"$dir/nbdsnap.log" &
pids+=($!)
wait_socket "$dir/nbdkit.sock"
wait_socket "$dir/nbdsnap.sock"

uri() { echo "nbd+unix:///?socket=$dir/$1.sock"; }

bench_machine ''
bench_table nbdsnap nbdkit
