// Crash-injection hook for tests: with NBDSNAP_FAULT=<point>[,<point>...] in its environment the
// daemon SIGKILLs itself when it reaches that step of a create/remove, so a test can restart it
// and check that startup repair leaves the catalog and files consistent. Unset in production.

export const FAULT_POINTS = [
  'origin-add:after-row',
  'snapshot-create:after-row',
  'snapshot-create:after-cow-file',
  'snapshot-create:after-store',
  'snapshot-create:after-activate',
  'snapshot-create:after-ready',
  'snapshot-remove:after-mark',
  'snapshot-remove:after-detach',
  'snapshot-remove:after-cow-delete',
  'origin-remove:after-mark',
  'origin-remove:after-snapshots',
  'origin-remove:after-close',
  'snapshot-merge:after-mark',
  'snapshot-merge:after-detach',
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

const armed = new Set((process.env.NBDSNAP_FAULT ?? '').split(',').map((s) => s.trim()).filter(Boolean));

/** Die here, at once and without cleanup, if this point is armed. */
export function faultPoint(point: FaultPoint): void {
  if (armed.has(point)) process.kill(process.pid, 'SIGKILL');
}
