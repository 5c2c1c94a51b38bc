#!/usr/bin/env bash
# Runs the in-guest test suite (test/vm/suite.ts) in a qemu guest with a real nbd and
# dm-snapshot (see docs/vm-testing.md). CI entry point.
#
#   scripts/vm-test.sh [TEST_NAME_SUBSTRING...]
#
# Environment: NBDSNAP_VM_ONLY_KERNEL=1 skips the tests that need the nbdsnap daemon;
# NBDSNAP_VM_SEED=N changes the workload seed; NBDSNAP_VM_TIMEOUT (default 2700 s) bounds the
# whole guest run (a guard against hangs; the suite takes about 20 minutes on an idle machine); NBDSNAP_VM_CACHE moves the kernel/initramfs cache.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/vm/run.sh" --timeout "${NBDSNAP_VM_TIMEOUT:-2700}" --timestamps -- \
  node test/vm/suite.ts "$@"
