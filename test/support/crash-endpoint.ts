// What the crash workload drives: one connection to one device (an NBD connection to a daemon
// export, or a BlockDevice in-process). Offsets are in 512-byte sectors.
import type { BlockDevice } from '../../src/block/device.ts';
import { CMD, FLAG, RawClient, request } from './nbd-test-client.ts';
import { SECTOR } from './crash-pattern.ts';

export interface Endpoint {
  read(sector: number, count: number): Promise<Buffer>;
  write(data: Buffer, sector: number, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  close(): void;
}

export function deviceEndpoint(dev: BlockDevice): Endpoint {
  return {
    async read(sector, count) {
      const buf = Buffer.alloc(count * SECTOR);
      await dev.read(buf, sector * SECTOR);
      return buf;
    },
    write: (data, sector, fua) => dev.write(data, sector * SECTOR, { fua }),
    flush: () => dev.flush(),
    close() {},
  };
}

interface Waiter {
  what: string;
  readLength: number;
  resolve(data: Buffer): void;
  reject(err: Error): void;
}

/** An NBD error reply, with its wire errno. */
export class NbdReplyError extends Error {
  readonly errno: number;
  constructor(errno: number, what: string) {
    super(`${what}: NBD error ${errno}`);
    this.errno = errno;
  }
}

/**
 * A pipelined NBD connection (simple replies): any number of requests in flight, replies matched
 * by cookie. The reply reader runs only while something is in flight, so RawClient's read
 * timeout (10 s) is a hang detector, never an idle timeout.
 */
export class NbdEndpoint implements Endpoint {
  private readonly raw: RawClient;
  private readonly waiting = new Map<bigint, Waiter>();
  private nextCookie = 1n;
  private reading = false;

  private constructor(raw: RawClient) {
    this.raw = raw;
  }

  static async open(socketPath: string, name: string): Promise<NbdEndpoint> {
    return new NbdEndpoint(await RawClient.open(socketPath, { name }));
  }

  read(sector: number, count: number): Promise<Buffer> {
    return this.send(CMD.READ, 0, sector, count * SECTOR, undefined, count * SECTOR);
  }

  async write(data: Buffer, sector: number, fua: boolean): Promise<void> {
    await this.send(CMD.WRITE, fua ? FLAG.FUA : 0, sector, data.length, data, 0);
  }

  async flush(): Promise<void> {
    await this.send(CMD.FLUSH, 0, 0, 0, undefined, 0);
  }

  close(): void {
    this.raw.destroy();
  }

  private send(type: number, flags: number, sector: number, length: number, payload: Buffer | undefined, readLength: number): Promise<Buffer> {
    const cookie = this.nextCookie++;
    const what = `${Object.keys(CMD).find((k) => CMD[k as keyof typeof CMD] === type)} ${sector}+${length / SECTOR}`;
    const done = new Promise<Buffer>((resolve, reject) => this.waiting.set(cookie, { what, readLength, resolve, reject }));
    this.raw.send(request(type, { flags, cookie, offset: sector * SECTOR, length, payload }));
    if (!this.reading) void this.readReplies();
    return done;
  }

  private async readReplies(): Promise<void> {
    this.reading = true;
    try {
      while (this.waiting.size > 0) {
        const reply = await this.raw.readSimpleReply();
        const waiter = this.waiting.get(reply.cookie);
        if (!waiter) throw new Error(`reply for unknown cookie ${reply.cookie}`);
        const data = reply.error === 0 && waiter.readLength > 0 ? Buffer.from(await this.raw.read(waiter.readLength)) : Buffer.alloc(0);
        this.waiting.delete(reply.cookie);
        if (reply.error !== 0) waiter.reject(new NbdReplyError(reply.error, waiter.what));
        else waiter.resolve(data);
      }
    } catch (err) {
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`${waiter.what}: ${(err as Error).message}`, { cause: err }));
      this.waiting.clear();
    } finally {
      this.reading = false;
    }
  }
}
