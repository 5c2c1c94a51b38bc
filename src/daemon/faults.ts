// Crash-injection hook for tests: with NBDSNAP_FAULT=<point>[@N][,<point>[@N]...] in its
// environment the daemon SIGKILLs itself when it reaches that step of a create/remove/merge (the
// Nth time, with @N; the first by default), so a test can restart it and check that startup
// repair leaves the catalog and files consistent. Unset in production.

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
  'snapshot-merge:after-cow-delete',
  /** after each committed merge batch (use @N to die in the middle of a merge) */
  'snapshot-merge:after-batch',
  /** a live restart's successor, after opening everything and before 'ready' (the old daemon must take back) */
  'restart:successor-before-ready',
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** Armed points and how many more hits each lets through before it fires. */
const armed = new Map<string, number>();
for (const spec of (process.env.NBDSNAP_FAULT ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
  const [point, nth] = spec.split('@');
  armed.set(point, Math.max(1, Number(nth) || 1) - 1);
}

/** Die here, at once and without cleanup, if this point is armed (and this is its Nth hit). */
export function faultPoint(point: FaultPoint): void {
  const left = armed.get(point);
  if (left === undefined) return;
  if (left > 0) armed.set(point, left - 1);
  else process.kill(process.pid, 'SIGKILL');
}
