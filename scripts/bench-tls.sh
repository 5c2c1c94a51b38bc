#!/usr/bin/env bash
# Benchmark nbdsnap's NBD server over TLS against `nbdkit --tls=require file` on the same 1 GiB
# file, with the same fio jobs (nbd ioengine, nbds+unix:// URIs), and print a table with the ratio
# nbdsnap/nbdkit. Both servers get the same X.509 credentials (an EC P-256 CA and server
# certificate), made here with openssl. fio's nbd engine lets libnbd read no file named in the URI
# (tls-certificates=, tls-psk-file=), so fio finds the CA where libnbd looks by default,
# $HOME/.pki/libnbd/ca-cert.pem, with HOME pointed at the temp dir; PSK cannot be measured that way.
#
#   scripts/bench-tls.sh [--runtime SECONDS] [--only JOBNAME]
#
# Needs nbdkit, fio (with the nbd engine), nbdinfo, jq and openssl. Takes about 2 * 5 * (runtime
# + 2) seconds. The jobs and the table are in scripts/bench-lib.sh (shared with scripts/bench.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
bench_args "$@"
bench_need nbdkit fio nbdinfo jq openssl
bench_start nbdsrv-bench-tls

# Credentials in the layout of nbdkit's --tls-certificates=DIR; the CA also where libnbd looks.
pki="$dir/pki"
mkdir -p "$pki" "$dir/home/.pki/libnbd"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$pki/ca-key.pem" -out "$pki/ca-cert.pem" -days 2 -subj "/CN=bench-tls CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -new "${ec[@]}" -keyout "$pki/server-key.pem" -out "$pki/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$pki/ext.cnf"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca-cert.pem" -CAkey "$pki/ca-key.pem" -set_serial 1 -days 2 \
  -extfile "$pki/ext.cnf" -out "$pki/server-cert.pem" 2>/dev/null
cp "$pki/ca-cert.pem" "$dir/home/.pki/libnbd/ca-cert.pem"
image=$(bench_image)

nbdkit -f --tls=require --tls-certificates="$pki" -U "$dir/nbdkit.sock" file "$image" 2>"$dir/nbdkit.log" &
pids+=($!)
NBDSNAP_LOG_LEVEL=info "$root/bin/nbdsnap" serve "$image" --socket "$dir/nbdsnap.sock" --tls require \
  --tls-cert "$pki/server-cert.pem" --tls-key "$pki/server-key.pem" 2>"$dir/nbdsnap.log" &
pids+=($!)
wait_socket "$dir/nbdkit.sock"
wait_socket "$dir/nbdsnap.sock"

export HOME="$dir/home" # for libnbd's default CA, see above
uri() { echo "nbds+unix:///?socket=$dir/$1.sock"; }

# Both servers must really require TLS: a plaintext client is refused, a TLS one gets in.
for server in nbdkit nbdsnap; do
  if nbdinfo --size "nbd+unix:///?socket=$dir/$server.sock" >/dev/null 2>&1; then
    echo "bench-tls: $server accepted a plaintext client" >&2; exit 1
  fi
  nbdinfo --size "$(uri "$server")" >/dev/null || { echo "bench-tls: no TLS connection to $server" >&2; exit 1; }
done
session=$(grep -m1 '"TLS established"' "$dir/nbdsnap.log" | jq -r '"\(.protocol) \(.cipher)"' 2>/dev/null || echo unknown)

bench_machine ", $(openssl version | cut -d' ' -f1-2)"
echo "TLS: both servers --tls require with X.509; nbdsnap negotiated $session with libnbd"
bench_table nbdsnap nbdkit nbdsnap-tls nbdkit-tls
