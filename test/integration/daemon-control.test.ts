// The control API without a daemon: the validation table, and the server/client pair over a real
// Unix socket with stub handlers (framing, size cap, error replies, socket mode, stale sockets).
import { describe, it, expect, afterEach } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { ControlError, type Handlers } from '../../src/control/api.ts';
import { validateRequest, REQUEST_SPECS } from '../../src/control/validate.ts';
import { ControlServer } from '../../src/control/server.ts';
import { callDaemon, DaemonUnreachableError } from '../../src/control/client.ts';

const invalid = (req: unknown) => {
  try {
    validateRequest(req);
  } catch (err) {
    return (err as ControlError).code;
  }
  return 'accepted';
};

describe('validateRequest', () => {
  it('accepts well-formed requests of every op and normalises paths', () => {
    expect(validateRequest({ op: 'origin.add', name: 'base', path: '/data//x/../base.img' })).toEqual({ op: 'origin.add', name: 'base', path: '/data/base.img' });
    expect(validateRequest({ op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: 1 << 20, kind: 'PO', chunkSectors: 16 })).toMatchObject({ sizeBytes: 1 << 20 });
    expect(validateRequest({ op: 'status', name: null })).toEqual({ op: 'status' });
    for (const op of Object.keys(REQUEST_SPECS)) expect(typeof REQUEST_SPECS[op as keyof typeof REQUEST_SPECS].fields).toBe('object');
  });

  it.each([
    ['not an object', [1, 2], 'BAD_REQUEST'],
    ['unknown op', { op: 'origin.explode' }, 'BAD_REQUEST'],
    ['op from the prototype', { op: 'toString' }, 'BAD_REQUEST'],
    ['unknown field', { op: 'origin.list', extra: 1 }, 'BAD_REQUEST'],
    ['missing name', { op: 'origin.add', path: '/x' }, 'INVALID'],
    ['name with a slash', { op: 'origin.add', name: '../x', path: '/x' }, 'INVALID'],
    ['name too long', { op: 'origin.add', name: 'a'.repeat(129), path: '/x' }, 'INVALID'],
    ['name as a number', { op: 'origin.remove', name: 7 }, 'INVALID'],
    ['relative path', { op: 'origin.add', name: 'a', path: 'x.img' }, 'INVALID'],
    ['path with NUL', { op: 'origin.add', name: 'a', path: '/x\0y' }, 'INVALID'],
    ['path too long', { op: 'origin.add', name: 'a', path: '/' + 'x'.repeat(5000) }, 'INVALID'],
    ['force as a string', { op: 'snapshot.remove', name: 'a', force: 'yes' }, 'INVALID'],
    ['both cow and size', { op: 'snapshot.create', name: 's', origin: 'o', cow: '/c', sizeBytes: 4096 }, 'INVALID'],
    ['neither cow nor size', { op: 'snapshot.create', name: 's', origin: 'o' }, 'INVALID'],
    ['size not a multiple of 512', { op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: 1000 }, 'INVALID'],
    ['size as a string', { op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: '1G' }, 'INVALID'],
    ['negative size', { op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: -512 }, 'INVALID'],
    ['fractional size', { op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: 512.5 }, 'INVALID'],
    ['kind lowercase', { op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: 4096, kind: 'p' }, 'INVALID'],
    ['chunk 12', { op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: 4096, chunkSectors: 12 }, 'INVALID'],
    ['chunk 0', { op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: 4096, chunkSectors: 0 }, 'INVALID'],
    ['chunk 2^22', { op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: 4096, chunkSectors: 2 ** 22 }, 'INVALID'],
  ])('refuses %s', (_what, req, code) => {
    expect(invalid(req)).toBe(code);
  });

  it('accepts the largest legal chunk size and names the field in the message', () => {
    expect(invalid({ op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: 4096, chunkSectors: 2 ** 21 })).toBe('accepted');
    expect(() => validateRequest({ op: 'snapshot.create', name: 's', origin: 'o', sizeBytes: 4096, chunkSectors: 3 })).toThrow(/^chunk size: must be a power of two/);
  });
});

describe('control server and client', () => {
  const dirs: string[] = [];
  const servers: ControlServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  const stubs = (): Handlers => ({
    'daemon.info': async () => ({ version: 'x', pid: 1, dataDir: '/d', controlSocket: '/c', nbdSocket: '/n', tcp: null, metrics: null }),
    'origin.add': async (r) => {
      throw new ControlError('EXISTS', `${r.name} exists`);
    },
    'origin.remove': async () => {
      throw new Error('boom');
    },
    'origin.list': async () => [],
    'snapshot.create': async () => {
      throw new ControlError('INVALID', 'no');
    },
    'snapshot.remove': async (r) => ({ removed: [r.name] }),
    'snapshot.merge': async () => {
      throw new ControlError('NOT_FOUND', 'no');
    },
    'snapshot.resize': async () => {
      throw new ControlError('NOT_FOUND', 'no');
    },
    'snapshot.list': async () => [],
    'snapshot.diff': async (r) => ({ name: r.name, origin: 'o', sizeBytes: 0, chunkBytes: 4096, changedBytes: 0, extents: [] }),
    'status': async () => [],
    'table': async () => [],
    'daemon.restart': async () => {
      throw new ControlError('RESTART_FAILED', 'no successor');
    },
  });

  async function serve(maxRequestBytes?: number): Promise<string> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemon-control-'));
    dirs.push(dir);
    const socket = path.join(dir, 'control.sock');
    const server = new ControlServer({ handlers: stubs(), maxRequestBytes });
    servers.push(server);
    await server.listen(socket);
    return socket;
  }

  /** Send `payload`; hang up once `replies` lines have come (or the server closes); resolves with them. */
  function rawExchange(socket: string, payload: string, replies = 1): Promise<string> {
    return new Promise((resolve) => {
      const c = net.connect(socket, () => c.write(payload));
      let text = '';
      c.on('error', () => undefined); // the server may close first (size cap): the reply is what counts
      c.on('data', (b) => {
        text += b;
        if (text.split('\n').length > replies) c.end();
      });
      c.on('close', () => resolve(text));
    });
  }

  it('answers requests and maps handler errors to codes', async () => {
    const socket = await serve();
    expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
    expect(await callDaemon(socket, { op: 'snapshot.remove', name: 's1' })).toEqual({ removed: ['s1'] });
    await expect(callDaemon(socket, { op: 'origin.add', name: 'a', path: '/x' })).rejects.toMatchObject({ code: 'EXISTS', message: 'a exists' });
    await expect(callDaemon(socket, { op: 'origin.remove', name: 'a' })).rejects.toMatchObject({ code: 'INTERNAL', message: 'boom' });
    await expect(callDaemon(socket, { op: 'origin.add', name: '-a', path: '/x' })).rejects.toMatchObject({ code: 'INVALID' });
  });

  it('answers several lines on one connection in order, and bad JSON without closing', async () => {
    const socket = await serve();
    const text = await rawExchange(socket, '{"op":"origin.list"}\nnot json\n\n{"op":"snapshot.remove","name":"z"}\n', 3);
    expect(text.trim().split('\n').map((l) => JSON.parse(l))).toEqual([
      { ok: true, result: [] },
      { ok: false, error: { code: 'BAD_REQUEST', message: 'the request is not valid JSON' } },
      { ok: true, result: { removed: ['z'] } },
    ]);
  });

  it('refuses a request line over the cap and closes the connection', async () => {
    const socket = await serve(1024);
    const text = await rawExchange(socket, `{"op":"origin.add","name":"${'a'.repeat(2000)}"}\n`);
    expect(JSON.parse(text)).toEqual({ ok: false, error: { code: 'BAD_REQUEST', message: 'request line longer than 1024 bytes' } });
    const noNewline = await rawExchange(socket, 'x'.repeat(5000));
    expect(JSON.parse(noNewline).error.code).toBe('BAD_REQUEST');
  });

  it('replaces a stale socket but refuses a live one or a non-socket file', async () => {
    const socket = await serve();
    const again = new ControlServer({ handlers: stubs() });
    await expect(again.listen(socket)).rejects.toThrow(/another process is listening/);
    await servers.pop()!.close();
    expect(fs.existsSync(socket)).toBe(false);
    // A crashed daemon's socket: bound, never unlinked, nobody listening (Node would unlink it).
    spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', socket]);
    expect(fs.existsSync(socket)).toBe(true);
    servers.push(again);
    await again.listen(socket);
    expect(await callDaemon(socket, { op: 'origin.list' })).toEqual([]);
    const plain = path.join(path.dirname(socket), 'plain');
    fs.writeFileSync(plain, 'keep me');
    await expect(new ControlServer({ handlers: stubs() }).listen(plain)).rejects.toThrow(/not a socket/);
    expect(fs.readFileSync(plain, 'utf8')).toBe('keep me');
  });

  it('reports an unreachable daemon clearly', async () => {
    await expect(callDaemon('/nonexistent/control.sock', { op: 'origin.list' })).rejects.toBeInstanceOf(DaemonUnreachableError);
    await expect(callDaemon('/nonexistent/control.sock', { op: 'origin.list' })).rejects.toThrow(/ENOENT.*is `nbdsnap daemon` running/);
  });

  it('finishes a request in progress on close and says SHUTTING_DOWN to new ones', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemon-control-'));
    dirs.push(dir);
    const socket = path.join(dir, 'control.sock');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const server = new ControlServer({ handlers: { ...stubs(), 'snapshot.list': async () => (started(), await gate, []) } });
    await server.listen(socket);
    const slow = callDaemon(socket, { op: 'snapshot.list' });
    const other = net.connect(socket);
    other.on('error', () => undefined);
    await new Promise((r) => other.once('connect', r));
    await running;
    const closing = server.close();
    const reply = new Promise<string>((resolve) => other.once('data', (b) => resolve(String(b))));
    other.write('{"op":"origin.list"}\n');
    expect(JSON.parse(await reply).error.code).toBe('SHUTTING_DOWN');
    release();
    expect(await slow).toEqual([]);
    await closing;
    expect(fs.existsSync(socket)).toBe(false);
  });
});
