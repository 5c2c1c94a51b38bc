// A small origin + snapshot stack over FaultDevices (MemoryDevices below), for the I/O-fault
// tests: the origin is filled with 0x11, chunks are 4 KiB, the COW has room for every chunk.
import { MemoryDevice } from '../../src/block/memory-device.ts';
import { openStore } from '../../src/store/open-store.ts';
import type { StoreKind } from '../../src/store/exception-store.ts';
import { decodeHeader } from '../../src/store/persistent/format.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import type { Snapshot } from '../../src/targets/snapshot.ts';
import { FaultDevice } from './fault-device.ts';

export const ORIGIN_BYTES = 256 * 1024;
export const CHUNK_SECTORS = 8;
export const CHUNK = CHUNK_SECTORS * 512;

export interface FaultSnap {
  snap: Snapshot;
  cow: FaultDevice;
  cowMem: MemoryDevice;
}

export interface FaultStack {
  origin: SnapshotOrigin;
  originFault: FaultDevice;
  originMem: MemoryDevice;
  snaps: FaultSnap[];
}

export async function faultStack(kinds: StoreKind[] = ['P'], cowBytes = ORIGIN_BYTES + 8 * CHUNK): Promise<FaultStack> {
  const originMem = new MemoryDevice(ORIGIN_BYTES, { data: Buffer.alloc(ORIGIN_BYTES, 0x11) });
  const originFault = new FaultDevice(originMem);
  const origin = new SnapshotOrigin(originFault);
  const snaps: FaultSnap[] = [];
  for (const kind of kinds) {
    const cowMem = new MemoryDevice(cowBytes);
    const cow = new FaultDevice(cowMem);
    const snap = await origin.createSnapshot(await openStore(kind, cow, { chunkSectors: CHUNK_SECTORS }));
    snaps.push({ snap, cow, cowMem });
  }
  return { origin, originFault, originMem, snaps };
}

/** The valid field of the COW header as it is on the device now. */
export function headerValid(s: FaultSnap): number {
  return decodeHeader(s.cowMem.bytes).valid;
}

/** Reopen the store from the COW's bytes as they are now (what a restart would see). */
export async function reopenState(s: FaultSnap, kind: StoreKind = 'P'): Promise<string> {
  const copy = new MemoryDevice(s.cowMem.size, { data: Buffer.from(s.cowMem.bytes) });
  return (await openStore(kind, copy, { chunkSectors: CHUNK_SECTORS })).state;
}

/** Is the write to a data chunk (not the header or area 0)? */
export const dataChunkWrite = (offset: number, _length: number, fua: boolean) => offset >= 2 * CHUNK && !fua;
/** Is the write a metadata commit (area 0; with FUA, or plain when a pipelined batch's flush makes it durable)? */
export const metadataWrite = (offset: number) => offset === CHUNK;
/** Is the write the header (the invalidation)? */
export const headerWrite = (offset: number) => offset === 0;

export function fill(byte: number, length = CHUNK): Buffer {
  return Buffer.alloc(length, byte);
}

/** The rejection's code (a Node system error) or errno (a BlockError). */
export async function errorOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const e = err as { code?: string; errno?: unknown };
    return String(e.code ?? e.errno);
  }
  return 'resolved';
}
