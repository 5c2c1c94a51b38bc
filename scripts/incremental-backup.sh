#!/usr/bin/env bash
# Incremental backups of an nbdsnap origin into one raw file, through snapshots
# (docs/incremental-backup.md explains the steps and why they are correct):
#
#   incremental-backup.sh full ORIGIN SNAP BACKUP
#       take snapshot SNAP of ORIGIN and copy it whole into the file BACKUP.
#   incremental-backup.sh incr ORIGIN PREV SNAP BACKUP
#       BACKUP holds snapshot PREV: take snapshot SNAP, copy into BACKUP only the chunks that
#       changed since PREV was taken, read from SNAP; check that BACKUP equals SNAP byte for byte;
#       remove PREV. SNAP is the PREV of the next run. A failed run leaves PREV in place and can
#       simply be run again (with a new SNAP name, after removing the unfinished SNAP).
#
# Environment:
#   NBDSNAP          the CLI (default: nbdsnap)
#   NBDSNAP_CONTROL  the daemon's control socket (the CLI's default otherwise)
#   NBD_SOCKET       the daemon's NBD socket (default: nbd.sock next to NBDSNAP_CONTROL)
#   COW_SIZE         the COW file of each snapshot taken (default: 1G); CHUNK_SECTORS its chunk size
#   CHANGES          where PREV's changed chunks come from: "bitmap" (default), the NBD metadata
#                    context qemu:dirty-bitmap:PREV on SNAP's export; or "diff", the output of
#                    `nbdsnap snapshot diff PREV --json` read after SNAP was taken
#   PYTHON           a python3 with the nbd module (default: python3, else /usr/bin/python3)
# Needs nbdcopy (libnbd-bin), python3-libnbd and qemu-img (qemu-utils).
set -euo pipefail

NBDSNAP=${NBDSNAP:-nbdsnap}
COW_SIZE=${COW_SIZE:-1G}
CHANGES=${CHANGES:-bitmap}
say() { echo "incremental-backup: $*" >&2; }
die() { say "$*"; exit 1; }

if [ -z "${NBD_SOCKET:-}" ]; then
  [ -n "${NBDSNAP_CONTROL:-}" ] || die "set NBD_SOCKET (the daemon's NBD socket) or NBDSNAP_CONTROL"
  NBD_SOCKET="$(dirname "$NBDSNAP_CONTROL")/nbd.sock"
fi
uri() { echo "nbd+unix:///$1?socket=$NBD_SOCKET"; }

# A python3 with libnbd's module (a pyenv or venv python3 first on PATH may lack it).
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import nbd' 2>/dev/null; then
  /usr/bin/python3 -c 'import nbd' 2>/dev/null || die "python3 cannot import nbd: install python3-libnbd"
  PYTHON=/usr/bin/python3
fi

take() { # ORIGIN SNAP
  "$NBDSNAP" snapshot create "$2" --origin "$1" --size "$COW_SIZE" ${CHUNK_SECTORS:+--chunk-size "$CHUNK_SECTORS"} >&2
}

# copy_changed URI BACKUP SOURCE: write into BACKUP (resized to the export's size) every changed
# extent of the export at URI, read from it; SOURCE is "bitmap:CONTEXT" or "diff:FILE".
copy_changed() {
  "$PYTHON" - "$@" <<'EOF'
import json, os, sys
import nbd

uri, backup, source = sys.argv[1:4]
kind, _, arg = source.partition(':')
PIECE = 32 * 1024 * 1024  # the server's largest read
h = nbd.NBD()
if kind == 'bitmap':
    h.add_meta_context(arg)
h.connect_uri(uri)
size = h.get_size()

def from_bitmap():
    if not h.can_meta_context(arg):
        sys.exit(f'{arg} is not offered on {uri} (is the snapshot valid?)')
    offset = 0
    while offset < size:
        entries = []
        def extent(context, at, got, err):
            if context == arg:
                entries.extend(got)
            return 0
        h.block_status(min(size - offset, 1 << 30), offset, extent)
        if not entries:
            sys.exit(f'no extents for {arg} at {offset}')
        for i in range(0, len(entries), 2):
            length = min(entries[i], size - offset)
            if entries[i + 1] & 1:  # NBD_STATE_DIRTY
                yield offset, length
            offset += length
            if offset >= size:
                break

def from_diff():
    with open(arg) as f:
        diff = json.load(f)
    for e in diff['extents']:
        yield e['offset'], e['length']
    if diff['sizeBytes'] < size:  # the origin grew since PREV: its new end is new data
        yield diff['sizeBytes'], size - diff['sizeBytes']

fd = os.open(backup, os.O_WRONLY)
os.ftruncate(fd, size)
copied = 0
for offset, length in (from_bitmap() if kind == 'bitmap' else from_diff()):
    end = offset + length
    while offset < end:
        n = min(PIECE, end - offset)
        os.pwrite(fd, h.pread(n, offset), offset)
        offset += n
        copied += n
os.fsync(fd)
os.close(fd)
h.shutdown()
print(copied)
EOF
}

full() { # ORIGIN SNAP BACKUP
  take "$1" "$2"
  nbdcopy --flush "$(uri "$2")" "$3"
  say "$3 now holds snapshot $2 (whole copy)"
}

incr() { # ORIGIN PREV SNAP BACKUP
  local origin=$1 prev=$2 snap=$3 backup=$4 source copied
  [ -f "$backup" ] || die "$backup does not exist: start with 'full'"
  take "$origin" "$snap"
  # PREV's map is read only now that SNAP exists: every write SNAP holds is in it.
  case "$CHANGES" in
    bitmap) source="bitmap:qemu:dirty-bitmap:$prev" ;;
    diff)
      DIFF_FILE=$(mktemp)
      trap 'rm -f "$DIFF_FILE"' EXIT
      "$NBDSNAP" snapshot diff "$prev" --json > "$DIFF_FILE"
      source="diff:$DIFF_FILE" ;;
    *) die "CHANGES must be bitmap or diff, not $CHANGES" ;;
  esac
  copied=$(copy_changed "$(uri "$snap")" "$backup" "$source")
  say "copied $copied changed bytes of $snap into $backup"
  qemu-img compare -q -f raw -F raw "$backup" "$(uri "$snap")" || die "$backup differs from snapshot $snap; $prev is kept"
  "$NBDSNAP" snapshot remove "$prev" >&2
  say "$backup now holds snapshot $snap (verified); $prev removed"
}

case "${1:-}" in
  full) [ $# -eq 4 ] || die "usage: $0 full ORIGIN SNAP BACKUP"; full "$2" "$3" "$4" ;;
  incr) [ $# -eq 5 ] || die "usage: $0 incr ORIGIN PREV SNAP BACKUP"; incr "$2" "$3" "$4" "$5" ;;
  *) die "usage: $0 full ORIGIN SNAP BACKUP | incr ORIGIN PREV SNAP BACKUP" ;;
esac
