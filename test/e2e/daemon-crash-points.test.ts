// Crash consistency of the catalog and the files: the daemon is SIGKILLed (NBDSNAP_FAULT) at each
// step of origin add, snapshot create, remove and merge, and origin remove; after a restart the catalog,
// the COW files and the served exports must agree, nothing half-made is served, and the same
// operation succeeds when retried.
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { FAULT_POINTS } from '../../src/daemon/faults.ts';
import { model, readExport, startDaemon, tempDir, writePattern, type DaemonHandle } from '../support/daemon-harness.ts';

const MiB = 1 << 20;
const SIZE = 4 * MiB;
const UNREACHABLE = 6;

interface World {
  dir: string;
  base: string;
  ext: string;
  cow: (name: string) => string;
}

/** base.img (0x11), ext.cow (zeroes), and optionally snapshots s1 (--size) and s2 (--cow ext.cow) with the origin written after them. */
async function prepare(withSnapshots: boolean): Promise<World> {
  const dir = tempDir('daemon-crash-');
  const world: World = { dir, base: path.join(dir, 'base.img'), ext: path.join(dir, 'ext.cow'), cow: (n) => path.join(dir, 'data', 'cow', `${n}.cow`) };
  fs.writeFileSync(world.base, model(SIZE, [[0, SIZE, 0x11]]));
  fs.writeFileSync(world.ext, Buffer.alloc(MiB));
  const d = await startDaemon(dir);
  await d.ok('origin', 'add', 'base', world.base);
  if (withSnapshots) {
    await d.ok('snapshot', 'create', 's1', '--origin', 'base', '--size', '1M');
    await d.ok('snapshot', 'create', 's2', '--origin', 'base', '--cow', world.ext);
    await writePattern(d, 'base', 0, 65536, 0x22);
  }
  expect((await d.stop()).code).toBe(0);
  return world;
}

async function names(d: DaemonHandle, what: 'origin' | 'snapshot'): Promise<string[]> {
  return (await d.ok(what, 'list', '--json')).map((x: { name: string; state: string }) => `${x.name}:${x.state}`);
}

async function served(d: DaemonHandle, name: string): Promise<boolean> {
  return readExport(d, name).then(
    () => true,
    () => false,
  );
}

/** The snapshots s1/s2 of `prepare(true)` still show the origin before the 0x22 write. */
async function expectPointInTime(d: DaemonHandle, name: string) {
  expect((await readExport(d, name)).equals(model(SIZE, [[0, SIZE, 0x11]])), name).toBe(true);
}

interface Case {
  point: string;
  withSnapshots: boolean;
  action: (w: World) => string[];
  check: (d: DaemonHandle, w: World) => Promise<void>;
  retry?: (w: World) => string[];
}

const createS3 = (w: World) => ['snapshot', 'create', 's3', '--origin', 'base', '--size', '1M'];
const rolledBackS3 = async (d: DaemonHandle, w: World) => {
  expect(await names(d, 'snapshot')).toEqual([]);
  expect(fs.existsSync(w.cow('s3'))).toBe(false);
  expect(await served(d, 's3')).toBe(false);
};
const removedS1 = async (d: DaemonHandle, w: World) => {
  expect(await names(d, 'snapshot')).toEqual(['s2:active']);
  expect(fs.existsSync(w.cow('s1'))).toBe(false);
  expect(await served(d, 's1')).toBe(false);
  await expectPointInTime(d, 's2');
};
const removedAll = async (d: DaemonHandle, w: World) => {
  expect(await names(d, 'origin')).toEqual([]);
  expect(await names(d, 'snapshot')).toEqual([]);
  expect(fs.existsSync(w.cow('s1'))).toBe(false);
  expect(fs.existsSync(w.ext)).toBe(true); // an external COW is never deleted
  expect(fs.existsSync(w.base)).toBe(true);
  expect(await served(d, 'base')).toBe(false);
};

/** Merging s1 resumes at the restart: wait for it; the origin is s1's content (before 0x22), s2 intact. */
const mergedS1 = async (d: DaemonHandle, w: World) => {
  const deadline = Date.now() + 30_000; // well within the test's timeout: the assertion below says what is wrong
  while ((await names(d, 'snapshot')).length > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(await names(d, 'snapshot')).toEqual(['s2:active']);
  expect(fs.existsSync(w.cow('s1'))).toBe(false);
  expect((await readExport(d, 'base')).equals(model(SIZE, [[0, SIZE, 0x11]]))).toBe(true);
  await expectPointInTime(d, 's2');
};

const CASES: Case[] = [
  {
    point: 'origin-add:after-row',
    withSnapshots: false,
    action: (w) => ['origin', 'add', 'o2', w.ext],
    check: async (d) => expect(await names(d, 'origin')).toEqual(['base:active', 'o2:active']),
  },
  ...['after-row', 'after-cow-file', 'after-store', 'after-activate'].map((step) => ({
    point: `snapshot-create:${step}`,
    withSnapshots: false,
    action: createS3,
    check: rolledBackS3,
    retry: createS3,
  })),
  {
    point: 'snapshot-create:after-activate',
    withSnapshots: false,
    action: (w: World) => ['snapshot', 'create', 's3', '--origin', 'base', '--cow', w.ext],
    check: async (d: DaemonHandle, w: World) => {
      expect(await names(d, 'snapshot')).toEqual([]);
      expect(fs.existsSync(w.ext)).toBe(true);
    },
    retry: (w: World) => ['snapshot', 'create', 's3', '--origin', 'base', '--cow', w.ext],
  },
  {
    point: 'snapshot-create:after-ready',
    withSnapshots: false,
    action: createS3,
    check: async (d, w) => {
      expect(await names(d, 'snapshot')).toEqual(['s3:active']);
      expect(fs.existsSync(w.cow('s3'))).toBe(true);
      expect(await served(d, 's3')).toBe(true);
    },
  },
  ...['after-mark', 'after-detach', 'after-cow-delete'].map((step) => ({
    point: `snapshot-remove:${step}`,
    withSnapshots: true,
    action: () => ['snapshot', 'remove', 's1'],
    check: removedS1,
  })),
  {
    point: 'snapshot-remove:after-cow-delete',
    withSnapshots: true,
    action: () => ['snapshot', 'remove', 's2'],
    check: async (d, w) => {
      expect(await names(d, 'snapshot')).toEqual(['s1:active']);
      expect(fs.existsSync(w.ext)).toBe(true);
      await expectPointInTime(d, 's1');
    },
  },
  ...['after-mark', 'after-snapshots', 'after-close'].map((step) => ({
    point: `origin-remove:${step}`,
    withSnapshots: true,
    action: () => ['origin', 'remove', 'base', '--force'],
    check: removedAll,
    retry: (w: World) => ['origin', 'add', 'base', w.base],
  })),
  ...['after-mark', 'after-batch', 'after-detach', 'after-cow-delete'].map((step) => ({
    point: `snapshot-merge:${step}`,
    withSnapshots: true,
    action: () => ['snapshot', 'merge', 's1', '--wait'],
    check: mergedS1,
  })),
];

describe.concurrent('crash points', () => {
  it('covers every fault point the daemon declares', () => {
    // restart:* points fire in a live restart's successor, not in the daemon a CLI talks to:
    // test/e2e/daemon-restart.test.ts covers them.
    expect(new Set(CASES.map((c) => c.point))).toEqual(new Set(FAULT_POINTS.filter((p) => !p.startsWith('restart:'))));
  });

  it.each(CASES.map((c) => [`${c.point} (${c.action(({ ext: 'EXT' }) as World).join(' ')})`, c] as const))('%s', async (_label, c) => {
    const w = await prepare(c.withSnapshots);
    try {
      let d = await startDaemon(w.dir, { env: { NBDSNAP_FAULT: c.point } });
      const r = await d.cli(...c.action(w));
      const exit = await Promise.race([d.exited, new Promise((r) => setTimeout(r, 5000, 'still running'))]);
      if (exit === 'still running') await d.stop('SIGKILL');
      expect(exit, `the fault point ${c.point} was not reached`).toEqual({ code: null, signal: 'SIGKILL' });
      expect(r.code, r.stderr).toBe(UNREACHABLE);
      d = await startDaemon(w.dir);
      try {
        await c.check(d, w);
        if (c.retry) await d.ok(...c.retry(w));
        if (c.withSnapshots && !c.point.startsWith('origin-remove') && !c.point.startsWith('snapshot-merge')) {
          expect((await readExport(d, 'base')).subarray(0, 65536).every((b) => b === 0x22)).toBe(true);
        }
      } finally {
        await d.stop();
      }
    } finally {
      fs.rmSync(w.dir, { recursive: true, force: true });
    }
  });
});
