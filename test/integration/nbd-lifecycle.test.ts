// Checklist items 33-34 (restart, SIGTERM) plus the serve command's own behaviour: stale
// sockets, TCP, exit codes and one-line errors for user mistakes.
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CMD, ERR, OPT, REP, RawClient, option, request } from '../support/nbd-test-client.ts';
import { NBDSNAP, makeImage, makeTempDir, startServe } from '../support/serve-process.ts';
import { waitFor } from '../support/wait-for.ts';
import { parseListen } from '../../src/cli/commands/serve.ts';

const run = promisify(execFile);
const SIZE = 64 * 1024 * 1024;
let dir: string;
let image: string;

beforeAll(() => {
  dir = makeTempDir();
  image = makeImage(dir, SIZE);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function readImage(offset: number, length: number): Buffer {
  const fd = fs.openSync(image, 'r');
  try {
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}

describe('serve lifecycle', () => {
  it('34: SIGTERM answers in-flight requests (or ESHUTDOWN), refuses new options with ERR_SHUTDOWN, exits 0', async () => {
    const srv = await startServe({ image, socket: `${dir}/term.sock` });
    const negotiating = await RawClient.connect(srv.socket);
    await negotiating.greet();
    const busy = await RawClient.open(srv.socket);
    const payload = Buffer.alloc(1024 * 1024, 0x5a);
    busy.send(Buffer.concat(Array.from({ length: 40 }, (_, i) => request(CMD.WRITE, { cookie: i + 1, offset: i * payload.length, payload }))));
    // Signal once the server is surely processing the batch (its first reply is out), so there
    // are requests in flight however slow the machine is.
    const answered = new Map<number, number>();
    const first = await busy.readSimpleReply();
    answered.set(Number(first.cookie), first.error);
    srv.proc.kill('SIGTERM');
    await srv.waitForStderr(/shutting down/); // logged just before the server starts closing
    negotiating.send(option(OPT.LIST));
    expect((await negotiating.readOptionReplies()).map((r) => r.type)).toEqual([REP.ERR_SHUTDOWN]);
    for (;;) {
      const r = await busy.readSimpleReply().catch((err: unknown) => {
        if (busy.closedAt === undefined || busy.pending !== 0) throw err;
        return undefined; // the server closed the connection after its last whole reply
      });
      if (!r) break;
      expect(answered.has(Number(r.cookie))).toBe(false);
      answered.set(Number(r.cookie), r.error);
    }
    expect(answered.size).toBeGreaterThan(0);
    expect([...answered.values()].every((e) => e === 0 || e === ERR.ESHUTDOWN)).toBe(true);
    const exit = await srv.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(srv.socket)).toBe(false);
    const ok = [...answered].filter(([, e]) => e === 0).map(([cookie]) => cookie);
    const fd = fs.openSync(image, 'r');
    for (const cookie of ok) {
      const got = Buffer.alloc(payload.length);
      fs.readSync(fd, got, 0, got.length, (cookie - 1) * payload.length);
      expect(got.equals(payload)).toBe(true);
    }
    fs.closeSync(fd);
  });

  it('33: after a crash the stale socket is replaced, and a restarted server shows the same size and data', async () => {
    const socket = `${dir}/restart.sock`;
    const first = await startServe({ image, socket });
    const c = await RawClient.open(socket);
    c.send(request(CMD.WRITE, { flags: 1, offset: 4096, payload: Buffer.alloc(4096, 0x33) }));
    expect((await c.readSimpleReply()).error).toBe(0);
    expect(await first.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    expect(fs.existsSync(socket)).toBe(true);
    const second = await startServe({ image, socket });
    const d = await RawClient.open(socket);
    expect(d.size).toBe(SIZE);
    d.send(request(CMD.READ, { offset: 4096, length: 4096 }));
    expect((await d.readSimpleReply()).error).toBe(0);
    expect((await d.read(4096)).equals(Buffer.alloc(4096, 0x33))).toBe(true);
    d.destroy();
    expect((await second.stop()).code).toBe(0);
  });

  it('33: qemu reconnect-delay survives a server restart in the middle of a session', async () => {
    const socket = `${dir}/qemu.sock`;
    let srv = await startServe({ image, socket });
    const opts = `driver=nbd,server.type=unix,server.path=${socket},reconnect-delay=20`;
    const qemu = run('qemu-io', ['--image-opts', opts, '-c', 'write -P 0x44 1M 64k', '-c', 'sleep 2500', '-c', 'read -P 0x44 1M 64k', '-c', 'write -P 0x45 2M 4k', '-c', 'read -P 0x45 2M 4k']);
    await waitFor(() => readImage(1024 * 1024, 65536).every((b) => b === 0x44), "qemu-io's first write on the image"); // then it sleeps
    expect((await srv.stop()).code).toBe(0);
    srv = await startServe({ image, socket });
    const { stdout } = await qemu;
    expect(stdout).toMatch(/read 65536\/65536 bytes at offset 1048576/);
    expect(stdout).toMatch(/read 4096\/4096 bytes at offset 2097152/);
    expect(stdout).not.toMatch(/Pattern verification failed|error/i);
    expect((await srv.stop()).code).toBe(0);
  });

  it('listens on TCP when asked (127.0.0.1 by default) and nbdinfo reads it', async () => {
    const srv = await startServe({ image, socket: `${dir}/tcp.sock`, extra: ['--listen', '0'] });
    const port = Number((await srv.waitForStderr(/"port":(\d+)/))[1]);
    expect(srv.stderr()).toMatch(/"host":"127\.0\.0\.1"/);
    const { stdout } = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/`]);
    expect(stdout.trim()).toBe(String(SIZE));
    expect((await srv.stop()).code).toBe(0);
  });

  it('--listen accepts PORT, HOST:PORT and [V6]:PORT only', () => {
    expect(parseListen('10809')).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(parseListen('0.0.0.0:10809')).toEqual({ host: '0.0.0.0', port: 10809 });
    expect(parseListen('[::1]:10809')).toEqual({ host: '::1', port: 10809 });
    for (const bad of ['', 'host', '::1:10809', '1:2:3', '70000', 'h:-1', '[::1]']) expect(() => parseListen(bad)).toThrow(/invalid --listen/);
  });

  it('user mistakes give one line on stderr and a distinct exit code', () => {
    const cases: [string[], number, RegExp][] = [
      [['serve', `${dir}/missing.img`, '--socket', `${dir}/x.sock`], 3, /^nbdsnap: cannot open .*missing\.img: ENOENT/],
      [['serve', image, '--socket', `${dir}/x.sock`, '--listen', 'localhost:99999'], 2, /^nbdsnap: invalid --listen/],
      [['serve', image, '--socket', `${dir}/no/such/dir/x.sock`], 1, /^nbdsnap: cannot listen/],
    ];
    for (const [args, code, message] of cases) {
      const res = spawnSync(NBDSNAP, args, { encoding: 'utf8', timeout: 15_000 });
      expect(res.status).toBe(code);
      expect(res.stderr).toMatch(message);
      expect(res.stderr.trim().split('\n')).toHaveLength(1);
      expect(res.stdout).toBe('');
    }
  });
});
