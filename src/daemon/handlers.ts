// The control API's handler table: one entry per op, over the daemon's operations. Requests
// arrive validated (control/validate.ts). Changes are serialised by one lock, so two creates or a
// create and a remove never interleave their steps; reads run at once.
import { ControlError, type DaemonInfo, type Handlers, type RestartResult, type StatusLine, type TableLine } from '../control/api.ts';
import type { DaemonContext } from './context.ts';
import { describeOrigin, describeSnapshot, originStatus, originTable, snapshotStatus, snapshotTable } from './describe.ts';
import { addOrigin, removeOrigin } from './origin-ops.ts';
import type { OriginEntry, SnapshotEntry } from './lifecycle.ts';
import { createSnapshot, removeSnapshot } from './snapshot-ops.ts';
import { snapshotDiff } from './snapshot-diff.ts';
import { mergeSnapshot } from './snapshot-merge.ts';
import { resizeSnapshot } from './snapshot-resize.ts';

/** Runs tasks one at a time, in arrival order. */
export function createLock(): <T>(task: () => Promise<T> | T) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return (task) => {
    const run = tail.then(task);
    tail = run.catch(() => undefined); // a failed task must not block the next one
    return run;
  };
}

/** The lines for every export (or the one named), origins before their snapshots. */
function linesFor<L>(ctx: DaemonContext, name: string | undefined, ofOrigin: (o: OriginEntry) => L, ofSnapshot: (o: OriginEntry, s: SnapshotEntry) => L): L[] {
  const lines: L[] = [];
  for (const origin of ctx.exports.origins.values()) {
    if (name === undefined || name === origin.row.name) lines.push(ofOrigin(origin));
    for (const snap of origin.snapshots.values()) if (name === undefined || name === snap.row.name) lines.push(ofSnapshot(origin, snap));
  }
  if (name !== undefined && lines.length === 0) throw new ControlError('NOT_FOUND', `no origin or snapshot named ${name}`);
  return lines;
}

/** What the handlers need of the daemon itself. */
export interface DaemonOps {
  info(): DaemonInfo;
  restart(wait: boolean, timeoutMs?: number): Promise<RestartResult>;
}

export function createHandlers(ctx: DaemonContext, daemon: DaemonOps): Handlers {
  const exclusive = ctx.exclusive;
  const conns = (name: string) => ctx.exports.connectionCount(name);
  return {
    'daemon.info': async () => daemon.info(),
    // Not under the lock itself: restart() serialises its handover with the changes.
    'daemon.restart': (r) => daemon.restart(r.wait ?? false, r.timeoutMs),
    'origin.add': (r) => exclusive(() => describeOrigin(addOrigin(ctx, r.name, r.path), conns)),
    'origin.remove': (r) => exclusive(async () => ({ removed: await removeOrigin(ctx, r.name, r.force ?? false) })),
    'origin.list': async () => [...ctx.exports.origins.values()].map((o) => describeOrigin(o, conns)),
    'snapshot.create': (r) =>
      exclusive(async () => {
        const entry = await createSnapshot(ctx, r);
        return describeSnapshot(ctx.exports.origins.get(r.origin)!, entry, conns);
      }),
    'snapshot.remove': (r) => exclusive(async () => ({ removed: await removeSnapshot(ctx, r.name, r.force ?? false) })),
    'snapshot.merge': (r) =>
      exclusive(async () => {
        const { origin, snapshot } = await mergeSnapshot(ctx, r.name, r.force ?? false);
        return describeSnapshot(origin, snapshot, conns);
      }),
    'snapshot.resize': (r) =>
      exclusive(() => {
        const { origin, snapshot } = resizeSnapshot(ctx, r);
        return describeSnapshot(origin, snapshot, conns);
      }),
    'snapshot.diff': (r) => snapshotDiff(ctx, r.name),
    'snapshot.list': async (r) => {
      if (r.origin !== undefined && !ctx.exports.origins.has(r.origin)) throw new ControlError('NOT_FOUND', `no origin named ${r.origin}`);
      return ctx.exports.snapshots().filter(({ origin }) => r.origin === undefined || origin.row.name === r.origin).map(({ origin, snapshot }) => describeSnapshot(origin, snapshot, conns));
    },
    'status': async (r): Promise<StatusLine[]> => linesFor(ctx, r.name, originStatus, snapshotStatus),
    'table': async (r): Promise<TableLine[]> => linesFor(ctx, r.name, originTable, snapshotTable),
  };
}
