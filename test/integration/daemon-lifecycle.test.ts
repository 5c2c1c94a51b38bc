// The export lifecycle owner's ordering rules (src/daemon/lifecycle.ts), on real files: an origin
// is served only once its snapshots are ready, an export is unserved and its clients disconnected
// before it is detached, an origin is closed only without snapshots, shutdown closes everything.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileDevice } from '../../src/block/file-device.ts';
import type { OriginRow, SnapshotRow } from '../../src/catalog/catalog.ts';
import { silentLogger } from '../../src/log.ts';
import { ExportLifecycle } from '../../src/daemon/lifecycle.ts';
import { describeSnapshot } from '../../src/daemon/describe.ts';

const MiB = 1024 * 1024;
let dir: string;
const log = silentLogger();

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbdsnap-lifecycle-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function file(name: string, size: number): FileDevice {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(0));
  fs.truncateSync(p, size);
  return FileDevice.open(p);
}

const originRow = (name: string): OriginRow => ({ name, path: path.join(dir, name), sizeBytes: 4 * MiB, state: 'ready', createdAt: '' });
const snapRow = (name: string, origin: string): SnapshotRow => ({
  name, origin, cowPath: path.join(dir, `${name}.cow`), kind: 'P', chunkSectors: 8, cowCreated: true, state: 'ready', createdAt: '', failure: null,
  sizeBytes: null, autoextendThreshold: null, autoextendPercent: null, mergeTotal: null,
});

function withClients(events: string[]) {
  const exports = new ExportLifecycle();
  exports.bindServer({ connectionCount: () => 0, disconnectExport: async (name) => void events.push(`disconnect ${name}`) });
  return exports;
}

/** An origin `name` served with one served snapshot `snapName`. */
async function servedPair(exports: ExportLifecycle, name: string, snapName: string) {
  const origin = exports.addOrigin(originRow(name), file(name, 4 * MiB), log);
  const snap = await exports.attachSnapshot(origin, snapRow(snapName, name), file(`${snapName}.cow`, 2 * MiB), log, { chunkSectors: 8 });
  exports.serveSnapshot(origin, snap);
  exports.serveOrigin(origin);
  return { origin, snap };
}

describe('ExportLifecycle', () => {
  it('serves an origin only once every snapshot under it is served or failed', async () => {
    const exports = withClients([]);
    const origin = exports.addOrigin(originRow('o'), file('o', 4 * MiB), log);
    const snap = await exports.attachSnapshot(origin, snapRow('s', 'o'), file('s.cow', 2 * MiB), log, { chunkSectors: 8 });
    expect(() => exports.serveOrigin(origin)).toThrow(/before snapshot s was ready/);
    expect(exports.get('o')).toBeUndefined();
    exports.addFailedSnapshot(origin, snapRow('f', 'o'), 'COW missing', log);
    exports.serveSnapshot(origin, snap);
    exports.serveOrigin(origin);
    expect(exports.list().map((e) => e.name).sort()).toEqual(['o', 's']);
    expect(exports.get('f')).toBeUndefined();
    expect(exports.failedCount()).toBe(1);
    await exports.closeAll(log);
  });

  it('unserves and disconnects a snapshot before detaching it, keeps it listed until forgotten, and closes an origin only without snapshots', async () => {
    const events: string[] = [];
    const exports = withClients(events);
    const { origin, snap } = await servedPair(exports, 'o', 's');
    const target = snap.target!;
    await exports.detachSnapshot(origin, snap);
    expect(events).toEqual(['disconnect s']);
    expect(exports.get('s')).toBeUndefined();
    expect(origin.target!.snapshots).not.toContain(target);
    expect(exports.findSnapshot('s')?.snapshot.state).toBe('removing');
    await exports.unserveOrigin(origin);
    await expect(exports.closeOrigin(origin)).rejects.toThrow(/still has snapshots/);
    exports.forgetSnapshot(origin, snap);
    await exports.closeOrigin(origin);
    expect(exports.origins.size).toBe(0);
    expect(events).toEqual(['disconnect s', 'disconnect o']);
  });

  it('shutdown unserves each origin before detaching its snapshots, and closes the rest when one fails', async () => {
    const events: string[] = [];
    const exports = withClients(events);
    const { snap: sa } = await servedPair(exports, 'a', 'sa');
    const b = exports.addOrigin(originRow('b'), file('b', 4 * MiB), log);
    exports.serveOrigin(b);
    // sa's store fails to close: the error comes out at the end, b is closed all the same.
    const store = sa.target!.store;
    store.close = async () => {
      throw new Error('injected close failure');
    };
    await expect(exports.closeAll(log)).rejects.toThrow(/injected close failure/);
    expect(events).toEqual(['disconnect a', 'disconnect sa', 'disconnect b']);
    expect(exports.origins.size).toBe(0);
    expect(exports.list()).toEqual([]);
  });

  it('lists a snapshot being removed as removing, and one whose merge is done as merging at 100% until it is forgotten', async () => {
    const exports = withClients([]);
    const { origin, snap } = await servedPair(exports, 'o', 's');
    const other = await exports.attachSnapshot(origin, snapRow('m', 'o'), file('m.cow', 2 * MiB), log, { chunkSectors: 8 });
    exports.serveSnapshot(origin, other);
    await origin.target!.write(Buffer.alloc(8192, 1), 0); // two chunks copied out to s and m
    const list = (entry: typeof snap) => describeSnapshot(origin, entry, () => 0);
    expect(list(other).state).toBe('active');

    const merge = await exports.startMerge(origin, other, log);
    await merge.finished;
    expect(merge.state).toBe('done');
    expect(list(other)).toMatchObject({ state: 'merging', merge: { percent: 100, mergedChunks: 2, totalChunks: 2 } });
    await exports.detachSnapshot(origin, other); // what finishing a merge does first
    expect(list(other)).toMatchObject({ state: 'merging', merge: { percent: 100, mergedChunks: 2, totalChunks: 2, totalBytes: 8192 } });
    other.error = 'finishing the merge failed: EACCES'; // what watchMerge records when the rest fails
    expect(list(other)).toMatchObject({ state: 'merge-failed', error: 'finishing the merge failed: EACCES', merge: { percent: 100 } });

    await exports.detachSnapshot(origin, snap);
    expect(list(snap)).toMatchObject({ state: 'removing', merge: null });
    exports.forgetSnapshot(origin, snap);
    exports.forgetSnapshot(origin, other);
    await exports.closeAll(log);
  });
});
