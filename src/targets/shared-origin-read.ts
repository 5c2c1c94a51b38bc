// One origin write that needs the same origin chunk preserved in several snapshots reads that
// chunk once: every snapshot copying it joins one OriginCopy, which reads each piece once into a
// leased buffer and writes it to all of them. (The kernel reads it once per snapshot.) A failed
// read fails only the snapshot that started the copy; the others read the piece again, so a
// transient origin read error costs one snapshot, as with the kernel's separate reads.
import type { BufferPool } from '../block/buffer-pool.ts';
import type { BlockDevice } from '../block/device.ts';
import { OriginCopy, type PieceWrite } from './origin-copy.ts';

export class SharedOriginRead {
  private readonly source: BlockDevice;
  private readonly pool: BufferPool;
  private readonly copies = new Map<string, OriginCopy>();

  constructor(source: BlockDevice, pool: BufferPool) {
    this.source = source;
    this.pool = pool;
  }

  /**
   * Copy the origin's bytes [start, start+length) with `write` (called once per piece), sharing
   * the reads with every other copy of the same range joined before its first piece was written.
   * Settles once the copy is over, rejected with the first error of this destination.
   */
  copy(start: number, length: number, write: PieceWrite): Promise<void> {
    const key = `${start}+${length}`;
    let copy = this.copies.get(key);
    if (!copy || copy.sealed) {
      copy = new OriginCopy(this.source, this.pool, start, length);
      this.copies.set(key, copy);
    }
    return copy.join(write);
  }
}
