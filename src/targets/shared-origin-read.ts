// One origin write that needs the same origin chunk preserved in several snapshots reads that
// chunk once: every snapshot copying it shares the buffer, which goes back to the pool when the
// last of them is done with it. (The kernel reads it once per snapshot.) A failed shared read
// fails only the snapshot that started it; the others read the chunk again on their own, so a
// transient origin read error costs one snapshot, as with the kernel's separate reads.
import type { BufferPool } from '../block/buffer-pool.ts';
import type { BlockDevice } from '../block/device.ts';

interface Entry {
  buf: Buffer;
  read: Promise<void>;
  users: number;
}

export class SharedOriginRead {
  private readonly source: BlockDevice;
  private readonly pool: BufferPool;
  private readonly entries = new Map<string, Entry>();

  constructor(source: BlockDevice, pool: BufferPool) {
    this.source = source;
    this.pool = pool;
  }

  /** Run `use` on the origin's bytes [start, start+length); `use` must not keep the buffer. */
  async use(start: number, length: number, use: (buf: Buffer) => Promise<void>): Promise<void> {
    const key = `${start}+${length}`;
    let entry = this.entries.get(key);
    const first = entry === undefined;
    if (!entry) {
      const buf = this.pool.acquire(length);
      entry = { buf, read: this.source.read(buf, start), users: 0 };
      this.entries.set(key, entry);
    }
    entry.users++;
    try {
      try {
        await entry.read;
      } catch (err) {
        if (first) throw err;
        return await this.alone(start, length, use);
      }
      await use(entry.buf);
    } finally {
      if (--entry.users === 0) {
        this.entries.delete(key);
        this.pool.release(entry.buf); // every user has awaited the read and finished with the buffer
      }
    }
  }

  private async alone(start: number, length: number, use: (buf: Buffer) => Promise<void>): Promise<void> {
    const buf = this.pool.acquire(length);
    try {
      await this.source.read(buf, start);
      await use(buf);
    } finally {
      this.pool.release(buf);
    }
  }
}
