// The client side of NBD_OPT_STARTTLS for tests: hand-written option bytes (nbd-test-client.ts)
// and node:tls for the TLS layer, plus a small sequential Endpoint over such a connection (the
// fuzz campaign reads an export through it when the server requires TLS).
import { once } from 'node:events';
import fs from 'node:fs';
import tls from 'node:tls';
import type { Endpoint } from './crash-endpoint.ts';
import { SECTOR } from './crash-pattern.ts';
import { CMD, FLAG, OPT, REP, RawClient, option, request } from './nbd-test-client.ts';

export const REP_ERR_TLS_REQD = 0x80000005;

/** TLS client options that trust the test CA (tls-certs.ts) and check the name localhost. */
export function trusting(caFile: string, extra: tls.ConnectionOptions = {}): tls.ConnectionOptions {
  return { ca: fs.readFileSync(caFile), servername: 'localhost', ...extra };
}

/** Send STARTTLS on a greeted connection, expect ACK, run the TLS handshake; resolves with a client over TLS. */
export async function startTls(c: RawClient, opts: tls.ConnectionOptions): Promise<RawClient> {
  c.send(option(OPT.STARTTLS));
  const [ack] = await c.readOptionReplies();
  if (ack.type !== REP.ACK) throw new Error(`STARTTLS refused: 0x${ack.type.toString(16)}`);
  const secure = tls.connect({ ...opts, socket: c.socket });
  const failed = once(secure, 'error').then(([err]) => Promise.reject(err as Error));
  await Promise.race([once(secure, 'secureConnect'), failed]);
  failed.catch(() => {}); // later errors surface as a closed connection
  return RawClient.over(secure);
}

/** Connect to a Unix socket, greet, STARTTLS, GO `name`. */
export async function openTls(socketPath: string, name: string, opts: tls.ConnectionOptions): Promise<RawClient & { size: number }> {
  const plain = await RawClient.connect(socketPath);
  await plain.greet();
  const c = await startTls(plain, opts);
  const { size } = await c.go(name);
  return Object.assign(c, { size });
}

/** One request at a time over a TLS connection (simple replies). */
export class TlsEndpoint implements Endpoint {
  private readonly c: RawClient;
  private cookie = 1n;

  private constructor(c: RawClient) {
    this.c = c;
  }

  static async open(socketPath: string, name: string, opts: tls.ConnectionOptions): Promise<TlsEndpoint> {
    return new TlsEndpoint(await openTls(socketPath, name, opts));
  }

  private async call(type: number, flags: number, offset: number, length: number, payload?: Buffer): Promise<void> {
    const cookie = this.cookie++;
    this.c.send(request(type, { flags, cookie, offset, length, payload }));
    const reply = await this.c.readSimpleReply();
    if (reply.cookie !== cookie || reply.error !== 0) throw new Error(`request ${type} at ${offset}: error ${reply.error}, cookie ${reply.cookie}`);
  }

  async read(sector: number, count: number): Promise<Buffer> {
    await this.call(CMD.READ, 0, sector * SECTOR, count * SECTOR);
    return Buffer.from(await this.c.read(count * SECTOR));
  }

  write(data: Buffer, sector: number, fua: boolean): Promise<void> {
    return this.call(CMD.WRITE, fua ? FLAG.FUA : 0, sector * SECTOR, data.length, data);
  }

  flush(): Promise<void> {
    return this.call(CMD.FLUSH, 0, 0, 0);
  }

  close(): void {
    this.c.destroy();
  }
}
