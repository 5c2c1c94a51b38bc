// A raw-socket NBD client for tests. Frames are built here from hand-written bytes, on purpose
// independent of src/nbd/codec.ts, so a codec bug cannot hide itself.
import net from 'node:net';

export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META: 9, SET_META: 10 };
export const REP = { ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4, ERR_UNSUP: 0x80000001, ERR_POLICY: 0x80000002, ERR_INVALID: 0x80000003, ERR_UNKNOWN: 0x80000006, ERR_SHUTDOWN: 0x80000007, ERR_TOO_BIG: 0x80000009 };
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 };
export const FLAG = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16 };
export const ERR = { EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28, ENOTSUP: 95, ESHUTDOWN: 108 };
/** For `closedAt` against a server timeout: a timer never fires early, but libuv counts whole milliseconds. */
export const CLOCK_SLACK_MS = 20;

export function u16(n: number): Buffer {
  return Buffer.from([(n >>> 8) & 0xff, n & 0xff]);
}
export function u32(n: number): Buffer {
  return Buffer.from([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}
export function u64(n: number | bigint): Buffer {
  const big = BigInt(n);
  return Buffer.concat([u32(Number(big >> 32n)), u32(Number(big & 0xffffffffn))]);
}
function be(buf: Buffer, at: number, size: number): number {
  let v = 0;
  for (let i = 0; i < size; i++) v = v * 256 + buf[at + i];
  return v;
}

export const IHAVEOPT = Buffer.from('IHAVEOPT', 'latin1');
const REPLY_MAGIC = Buffer.from([0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9]);

/** An option request: IHAVEOPT, option, length, data. */
export function option(opt: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([IHAVEOPT, u32(opt), u32(data.length), data]);
}
/** GO/INFO data: name length, name, info count, infos. */
export function goData(name: string, infos: number[] = []): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([u32(n.length), n, u16(infos.length), ...infos.map(u16)]);
}
/** LIST/SET_META_CONTEXT data. */
export function metaData(name: string, queries: string[]): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([u32(n.length), n, u32(queries.length), ...queries.flatMap((q) => [u32(Buffer.byteLength(q)), Buffer.from(q)])]);
}
/** A 28-byte request header (plus payload for WRITE). */
export function request(type: number, o: { flags?: number; cookie?: number | bigint; offset?: number | bigint; length?: number; payload?: Buffer; magic?: number } = {}): Buffer {
  const head = Buffer.concat([
    u32(o.magic ?? 0x25609513), u16(o.flags ?? 0), u16(type), u64(o.cookie ?? 1), u64(o.offset ?? 0), u32(o.length ?? o.payload?.length ?? 0),
  ]);
  return o.payload ? Buffer.concat([head, o.payload]) : head;
}

export interface OptionReply { option: number; type: number; payload: Buffer }
export interface SimpleReply { error: number; cookie: bigint }
export interface ChunkReply { flags: number; type: number; cookie: bigint; payload: Buffer }

export class RawClient {
  readonly socket: net.Socket;
  private chunks: Buffer[] = [];
  private total = 0;
  private wake: (() => void) | undefined;
  private ended = false;
  readonly closed: Promise<void>;
  /** performance.now() when the connection closed (undefined while open), to time server-side timeouts. */
  closedAt: number | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.total += d.length;
      this.wake?.();
    });
    socket.on('error', () => {}); // the tests look at `closed` and at the bytes
    this.closed = new Promise((resolve) => socket.on('close', () => {
      this.closedAt = performance.now();
      this.ended = true;
      this.wake?.();
      resolve();
    }));
  }

  /** A client over a socket that is connected already (the TLS socket after STARTTLS). */
  static over(socket: net.Socket): RawClient {
    return new RawClient(socket);
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(path);
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  send(...bufs: Buffer[]): void {
    for (const b of bufs) this.socket.write(b);
  }

  /** Exactly n bytes; rejects if the server closes first or after timeoutMs. */
  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.total < n) {
      if (this.ended) throw new Error(`connection closed with ${this.total}/${n} bytes`);
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${n} bytes (have ${this.total})`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 50);
      });
    }
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.total -= n;
    return all.subarray(0, n);
  }

  /** Resolves true if the server closes within timeoutMs (with no further bytes required). */
  async closedWithin(timeoutMs = 5000): Promise<boolean> {
    return Promise.race([this.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs))]);
  }

  get pending(): number {
    return this.total;
  }

  async readOptionReply(): Promise<OptionReply> {
    const head = await this.read(20);
    if (!head.subarray(0, 8).equals(REPLY_MAGIC)) throw new Error(`bad option reply magic ${head.toString('hex')}`);
    const length = be(head, 16, 4);
    return { option: be(head, 8, 4), type: be(head, 12, 4), payload: await this.read(length) };
  }

  /** Read option replies until ACK or an error; returns them all (the last ends the option). */
  async readOptionReplies(): Promise<OptionReply[]> {
    const out: OptionReply[] = [];
    for (;;) {
      const r = await this.readOptionReply();
      out.push(r);
      if (r.type === REP.ACK || r.type >= 0x80000000) return out;
    }
  }

  async readSimpleReply(): Promise<SimpleReply> {
    const head = await this.read(16);
    if (be(head, 0, 4) !== 0x67446698) throw new Error(`not a simple reply: ${head.toString('hex')}`);
    return { error: be(head, 4, 4), cookie: head.readBigUInt64BE(8) };
  }

  /**
   * With nothing in flight: send a 512-byte READ as a marker and read its simple reply (and data).
   * The server sent whatever it had for this connection before that reply, so bytes that should
   * not exist arrive first and break the reply's magic or cookie; `pending` shows any after it.
   */
  async readMarker(cookie: bigint): Promise<SimpleReply> {
    this.send(request(CMD.READ, { cookie, length: 512 }));
    const reply = await this.readSimpleReply();
    if (reply.error === 0 && reply.cookie === cookie) await this.read(512);
    return reply;
  }

  async readChunk(): Promise<ChunkReply> {
    const head = await this.read(20);
    if (be(head, 0, 4) !== 0x668e33ef) throw new Error(`not a structured chunk: ${head.toString('hex')}`);
    return { flags: be(head, 4, 2), type: be(head, 6, 2), cookie: head.readBigUInt64BE(8), payload: await this.read(be(head, 16, 4)) };
  }

  /** Read the 18-byte greeting and answer with client flags. */
  async greet(clientFlags = 3): Promise<Buffer> {
    const greeting = await this.read(18);
    this.send(u32(clientFlags));
    return greeting;
  }

  /** GO for `name`; returns size and transmission flags from INFO_EXPORT. */
  async go(name = '', infos: number[] = []): Promise<{ size: number; flags: number; replies: OptionReply[] }> {
    this.send(option(OPT.GO, goData(name, infos)));
    const replies = await this.readOptionReplies();
    const last = replies[replies.length - 1];
    if (last.type !== REP.ACK) throw new Error(`GO failed: 0x${last.type.toString(16)}`);
    const exp = replies.find((r) => r.type === REP.INFO && be(r.payload, 0, 2) === 0)!;
    return { size: be(exp.payload, 2, 8), flags: be(exp.payload, 10, 2), replies };
  }

  /** Connect, negotiate (optionally structured replies + base:allocation), GO. */
  static async open(path: string, opts: { structured?: boolean; meta?: boolean; name?: string } = {}): Promise<RawClient & { size: number; flags: number }> {
    const c = await RawClient.connect(path);
    await c.greet();
    if (opts.structured || opts.meta) {
      c.send(option(OPT.STRUCTURED_REPLY));
      await c.readOptionReplies();
    }
    if (opts.meta) {
      c.send(option(OPT.SET_META, metaData(opts.name ?? '', ['base:allocation'])));
      await c.readOptionReplies();
    }
    const { size, flags } = await c.go(opts.name ?? '');
    return Object.assign(c, { size, flags });
  }

  end(): void {
    this.socket.end();
  }
  destroy(): void {
    this.socket.destroy();
  }
}
