// An in-process daemon core for the dirty-bitmap tests: the real ExportLifecycle (the daemon's
// export provider, which gives every export its dirty bitmaps) over temp files, served by a real
// NbdServer on a temp Unix socket, without catalog or control socket.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileDevice } from '../../src/block/file-device.ts';
import type { OriginRow, SnapshotRow } from '../../src/catalog/catalog.ts';
import { ExportLifecycle, type OriginEntry, type SnapshotEntry } from '../../src/daemon/lifecycle.ts';
import { silentLogger } from '../../src/log.ts';
import { NbdServer } from '../../src/nbd/server.ts';

export interface BitmapWorld {
  dir: string;
  socket: string;
  exports: ExportLifecycle;
  origin: OriginEntry;
  /** Take a snapshot of the origin now (`chunkSectors` chunks, a P store unless told) and serve it. */
  snapshot(name: string, chunkSectors: number, opts?: { cowBytes?: number; kind?: SnapshotRow['kind'] }): Promise<SnapshotEntry>;
  /** Unserve, detach and forget a snapshot (snapshot remove). */
  remove(name: string): Promise<void>;
  uri(exportName: string): string;
  close(): Promise<void>;
}

const log = silentLogger();

function file(p: string, size: number): FileDevice {
  fs.writeFileSync(p, Buffer.alloc(0));
  fs.truncateSync(p, size);
  return FileDevice.open(p);
}

/** An origin `name` of `size` bytes (zeroes), served with no snapshots yet. */
export async function bitmapWorld(size: number, name = 'o'): Promise<BitmapWorld> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dirty-bitmap-'));
  const socket = path.join(dir, 'nbd.sock');
  const exports = new ExportLifecycle();
  const server = new NbdServer({ exports, logger: log });
  exports.bindServer(server);
  const originRow: OriginRow = { name, path: path.join(dir, `${name}.img`), sizeBytes: size, state: 'ready', createdAt: '' };
  const origin = exports.addOrigin(originRow, file(originRow.path, size), log);
  exports.serveOrigin(origin);
  await server.listenUnix(socket);
  return {
    dir,
    socket,
    exports,
    origin,
    async snapshot(snapName, chunkSectors, { cowBytes = 2 * size, kind = 'P' } = {}) {
      const row = {
        name: snapName, origin: name, cowPath: path.join(dir, `${snapName}.cow`), kind, chunkSectors, cowCreated: true,
        state: 'ready', createdAt: '', failure: null, sizeBytes: size, autoextendThreshold: null, autoextendPercent: null,
      } as SnapshotRow;
      const entry = await exports.attachSnapshot(origin, row, file(row.cowPath, cowBytes), log, { chunkSectors });
      exports.serveSnapshot(origin, entry);
      return entry;
    },
    async remove(snapName) {
      const entry = origin.snapshots.get(snapName)!;
      await exports.detachSnapshot(origin, entry);
      exports.forgetSnapshot(origin, entry);
    },
    uri: (exportName) => `nbd+unix:///${exportName}?socket=${socket}`,
    async close() {
      await server.close();
      await exports.closeAll(log);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
