// Servers for the NBD fuzzer: `nbdsnap serve` on a tagged image, and the daemon with an origin
// and a snapshot of it (both tagged, since the snapshot was taken of the tagged origin).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemon, type DaemonHandle } from './daemon-harness.ts';
import { ExportModel, initialImage } from './fuzz-nbd-model.ts';
import type { FuzzTarget } from './fuzz-nbd-campaign.ts';
import { startServe, type ServeProcess } from './serve-process.ts';

export const FUZZ_EXPORT_SIZE = 8 * 1024 * 1024;

export function fuzzTempDir(kind: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `fuzz-${kind}-`));
}

/** `nbdsnap serve` on a tagged image; the default export and `fuzz` are the same device. */
export async function startServeTarget(dir: string, extra: string[] = [], size = FUZZ_EXPORT_SIZE): Promise<{ srv: ServeProcess; target: FuzzTarget }> {
  const image = path.join(dir, 'disk.img');
  fs.writeFileSync(image, initialImage(size));
  const srv = await startServe({ image, dir, name: 'fuzz', extra, env: { NBDSNAP_LOG_LEVEL: 'error' } });
  const target: FuzzTarget = { socket: srv.socket, pid: srv.proc.pid!, fuzzed: { name: 'fuzz', model: new ExportModel(size) }, others: [] };
  return { srv, target };
}

export interface DaemonTargets {
  daemon: DaemonHandle;
  /** Fuzz the snapshot; the origin must not change. */
  snapshot: FuzzTarget;
  /** Fuzz the origin; the snapshot (its point in time) must not change. */
  origin: FuzzTarget;
}

/** The daemon with origin `o` (tagged) and persistent snapshot `s` of it (COW large enough never to overflow). */
export async function startDaemonTargets(dir: string): Promise<DaemonTargets> {
  const image = path.join(dir, 'origin.img');
  fs.writeFileSync(image, initialImage(FUZZ_EXPORT_SIZE));
  const daemon = await startDaemon(dir, { args: ['--log-level', 'error'] });
  await daemon.ok('origin', 'add', 'o', image);
  await daemon.ok('snapshot', 'create', 's', '--origin', 'o', '--size', '32M');
  const o = { name: 'o', model: new ExportModel(FUZZ_EXPORT_SIZE) };
  const s = { name: 's', model: new ExportModel(FUZZ_EXPORT_SIZE) };
  const base = { socket: daemon.nbdSocket, pid: daemon.proc.pid! };
  return { daemon, snapshot: { ...base, fuzzed: s, others: [o] }, origin: { ...base, fuzzed: o, others: [s] } };
}
