// Every CLI command against a real daemon process, including bad input for each argument, with
// exit codes and --json output checked.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { holdConnection, runCli, startDaemon, tempDir, type DaemonHandle } from '../support/daemon-harness.ts';

const MiB = 1 << 20;
const EXIT = { OK: 0, USAGE: 2, NOT_FOUND: 3, EXISTS: 4, BUSY: 5, UNREACHABLE: 6, INVALID: 7, TOOL: 8 };

let d: DaemonHandle;
let dir: string;
const file = (name: string, size = 8 * MiB) => {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(0));
  fs.truncateSync(p, size);
  return p;
};

async function expectExit(args: string[], code: number, message?: RegExp) {
  const r = await d.cli(...args);
  expect({ args, code: r.code, stderr: r.stderr }).toMatchObject({ code });
  if (code !== 0) {
    expect(r.stderr.trim().split('\n').length, r.stderr).toBeLessThanOrEqual(2); // one line (+ commander's hint)
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  }
  if (message) expect(r.stderr).toMatch(message);
  return r;
}

beforeAll(async () => {
  dir = tempDir();
  d = await startDaemon(dir);
});
afterAll(async () => {
  await d?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('daemon sockets', () => {
  it('creates the control and NBD sockets with mode 0600', () => {
    expect(fs.statSync(d.control).mode & 0o777).toBe(0o600);
    expect(fs.statSync(d.nbdSocket).mode & 0o777).toBe(0o600);
  });

  it('refuses a second daemon on the same sockets', async () => {
    // Another data dir (the same one is refused before the sockets: test/e2e/exclusive.test.ts).
    const r = await runCli(['daemon', '--data-dir', path.join(dir, 'other-data'), '--socket', d.nbdSocket, '--control', d.control, '--log-level', 'silent']);
    expect(r.code).toBe(EXIT.BUSY);
    expect(r.stderr).toMatch(/another process is listening/);
    expect((await d.cli('origin', 'list')).code).toBe(0); // still alive
  });

  it('rejects bad daemon settings', async () => {
    for (const args of [['--listen', 'nonsense:x'], ['--log-level', 'loud'], ['--config', path.join(dir, 'missing.json')]]) {
      const r = await runCli(['daemon', '--data-dir', path.join(dir, 'other'), ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: EXIT.INVALID });
    }
  });
});

describe('origin', () => {
  it('adds an origin and lists it as JSON with numbers', async () => {
    const base = file('base.img');
    const added = await d.ok('origin', 'add', 'base', base, '--json');
    expect(added).toMatchObject({ name: 'base', path: base, sizeBytes: 8 * MiB, state: 'active', snapshots: [] });
    const list = await d.ok('origin', 'list', '--json');
    expect(list).toEqual([expect.objectContaining({ name: 'base', sizeBytes: 8 * MiB, connections: 0 })]);
    expect(await d.ok('origin', 'list')).toMatch(/^NAME\s+SIZE\s+SNAPS\s+CONNS\s+STATE\s+PATH\nbase\s+8\.00M\s+0\s+0\s+active/);
  });

  it('accepts a relative path, resolved against the CLI\'s directory', async () => {
    file('rel.img', MiB);
    const r = await new Promise<number | null>((resolve) => {
      const c = spawn(path.resolve('bin/nbdsnap'), ['origin', 'add', 'rel', 'rel.img', '--control', d.control], { cwd: dir, stdio: 'ignore' });
      c.on('close', resolve);
    });
    expect(r).toBe(0);
    expect((await d.ok('status', 'rel', '--json'))[0]).toMatchObject({ name: 'rel', sectors: 2048 });
    await d.ok('origin', 'remove', 'rel');
  });

  it('refuses bad names, duplicate names, missing and unusable paths', async () => {
    const other = file('other.img');
    await expectExit(['origin', 'add', 'base', other], EXIT.EXISTS, /already used by an origin/);
    for (const bad of ['bad/name', 'a b', '.hidden', 'x'.repeat(129), 'ü']) {
      await expectExit(['origin', 'add', bad, other], EXIT.INVALID, /invalid name/);
    }
    await expectExit(['origin', 'add', 'o2', path.join(dir, 'nope.img')], EXIT.INVALID, /does not exist/);
    await expectExit(['origin', 'add', 'o2', dir], EXIT.INVALID, /not a regular file or block device/);
    await expectExit(['origin', 'add', 'o2', '/dev/null'], EXIT.INVALID, /not a regular file or block device/);
    await expectExit(['origin', 'add', 'o2', file('empty.img', 0)], EXIT.INVALID, /multiple of 512/);
    await expectExit(['origin', 'add', 'o2', file('odd.img', 1000)], EXIT.INVALID, /multiple of 512/);
    await expectExit(['origin', 'add', 'o2', path.join(d.dataDir, 'catalog.db')], EXIT.INVALID, /inside the data directory/);
    fs.symlinkSync(path.join(dir, 'base.img'), path.join(dir, 'link.img'));
    await expectExit(['origin', 'add', 'o2', path.join(dir, 'link.img')], EXIT.EXISTS, /already used as the origin base/);
    fs.linkSync(path.join(dir, 'base.img'), path.join(dir, 'hardlink.img'));
    await expectExit(['origin', 'add', 'o2', path.join(dir, 'hardlink.img')], EXIT.EXISTS, /already used as the origin base/);
    await expectExit(['origin', 'add', 'o2'], EXIT.USAGE, /missing required argument/);
    expect((await d.ok('origin', 'list', '--json')).map((o: { name: string }) => o.name)).toEqual(['base']);
  });
});

describe('snapshot create', () => {
  it('creates a snapshot with a new COW file, default P and 8 sectors', async () => {
    const s = await d.ok('snapshot', 'create', 's1', '--origin', 'base', '--size', '2M', '--json');
    expect(s).toMatchObject({ name: 's1', origin: 'base', kind: 'P', chunkSectors: 8, cowCreated: true, cowSizeBytes: 2 * MiB, sizeBytes: 8 * MiB, state: 'active', dataPercent: 0 });
    expect(s.cowPath).toBe(path.join(d.dataDir, 'cow', 's1.cow'));
    expect(fs.statSync(s.cowPath).size).toBe(2 * MiB);
  });

  it('uses an existing --cow as it is, with PO and a chunk size', async () => {
    const cow = file('s2.cow', MiB);
    const s = await d.ok('snapshot', 'create', 's2', '--origin', 'base', '--cow', cow, '--persistent', 'po', '--chunk-size', '16', '--json');
    expect(s).toMatchObject({ name: 's2', kind: 'PO', chunkSectors: 16, cowCreated: false, cowPath: cow });
  });

  it('refuses bad sizes, chunk sizes, kinds and the wrong option combinations', async () => {
    const base = ['snapshot', 'create', 'bad', '--origin', 'base'];
    for (const size of ['12Q', 'lots', '1.5', '0', '', '1e9', '99999999999T']) {
      await expectExit([...base, '--size', size], EXIT.INVALID, /--size/);
    }
    await expectExit([...base, '--size', '1000'], EXIT.INVALID, /multiple of 512/);
    await expectExit([...base, '--size', '4K'], EXIT.INVALID, /cannot create the COW/);
    for (const chunk of ['12', '0', '3', '4194304']) {
      await expectExit([...base, '--size', '1M', '--chunk-size', chunk], EXIT.INVALID, /chunk size: must be a power of two/);
    }
    for (const chunk of ['16k', '0x10', '-8', '8.0']) {
      await expectExit([...base, '--size', '1M', '--chunk-size', chunk], EXIT.INVALID, /--chunk-size/);
    }
    await expectExit([...base, '--size', '1M', '--persistent', 'X'], EXIT.INVALID, /--persistent/);
    await expectExit([...base, '--size', '1M', '--persistent', 'PX'], EXIT.INVALID, /--persistent/);
    await expectExit([...base, '--size', '1M', '--cow', file('both.cow')], EXIT.USAGE, /exactly one/);
    await expectExit(base, EXIT.USAGE, /exactly one/);
    await expectExit(['snapshot', 'create', 'bad', '--size', '1M'], EXIT.USAGE, /--origin/);
    expect(fs.existsSync(path.join(d.dataDir, 'cow', 'bad.cow'))).toBe(false);
  });

  it('refuses duplicate names, unknown origins, and bad or shared COW paths', async () => {
    await expectExit(['snapshot', 'create', 's1', '--origin', 'base', '--size', '1M'], EXIT.EXISTS, /already used by a snapshot/);
    await expectExit(['snapshot', 'create', 'base', '--origin', 'base', '--size', '1M'], EXIT.EXISTS, /already used by an origin/);
    await expectExit(['snapshot', 'create', 'x', '--origin', 'nope', '--size', '1M'], EXIT.NOT_FOUND, /no origin named nope/);
    await expectExit(['snapshot', 'create', 'x', '--origin', 's1', '--size', '1M'], EXIT.NOT_FOUND, /it is a snapshot/);
    await expectExit(['snapshot', 'create', 'x', '--origin', 'bad/o', '--size', '1M'], EXIT.INVALID, /invalid name/);
    await expectExit(['snapshot', 'create', 'x', '--origin', 'base', '--cow', path.join(dir, 'missing.cow')], EXIT.INVALID, /does not exist/);
    await expectExit(['snapshot', 'create', 'x', '--origin', 'base', '--cow', path.join(dir, 'base.img')], EXIT.INVALID, /must not be the origin/);
    await expectExit(['snapshot', 'create', 'x', '--origin', 'base', '--cow', path.join(dir, 'hardlink.img')], EXIT.INVALID, /must not be the origin/);
    await expectExit(['snapshot', 'create', 'x', '--origin', 'base', '--cow', path.join(dir, 's2.cow')], EXIT.EXISTS, /already used as the snapshot COW s2/);
    await expectExit(['snapshot', 'create', 'x', '--origin', 'base', '--cow', path.join(d.dataDir, 'cow', 's1.cow')], EXIT.INVALID, /inside the data directory/);
    const garbage = file('garbage.cow', MiB);
    fs.writeFileSync(garbage, Buffer.from('this is not a snapshot store header'), { flag: 'r+' });
    await expectExit(['snapshot', 'create', 'x', '--origin', 'base', '--cow', garbage], EXIT.INVALID, /not a usable COW store/);
    fs.writeFileSync(path.join(d.dataDir, 'cow', 'left.cow'), 'x');
    await expectExit(['snapshot', 'create', 'left', '--origin', 'base', '--size', '1M'], EXIT.EXISTS, /already exists/);
    fs.rmSync(path.join(d.dataDir, 'cow', 'left.cow'));
    const names = (await d.ok('snapshot', 'list', '--json')).map((s: { name: string }) => s.name);
    expect(names).toEqual(['s1', 's2']);
  });
});

describe('read commands', () => {
  it('lists snapshots like lvs, filtered by origin', async () => {
    const text = await d.ok('snapshot', 'list');
    expect(text.split('\n')[0]).toMatch(/^NAME\s+ORIGIN\s+KIND\s+CHUNK\s+SIZE\s+COW\s+DATA%\s+STATE\s+CONNS$/);
    expect(text).toMatch(/\ns1\s+base\s+P\s+8\s+8\.00M\s+2\.00M\s+0\.00\s+active\s+0/);
    expect(await d.ok('snapshot', 'list', '--origin', 'base', '--json')).toHaveLength(2);
    await expectExit(['snapshot', 'list', '--origin', 'nope'], EXIT.NOT_FOUND);
  });

  it('prints status and table lines like dmsetup', async () => {
    const status = (await d.ok('status')).trimEnd().split('\n');
    expect(status[0]).toBe('base: 0 16384 snapshot-origin ');
    expect(status[1]).toMatch(/^s1: 0 16384 snapshot 16\/4096 16$/);
    expect(status[2]).toMatch(/^s2: 0 16384 snapshot 32\/2048 32$/);
    const table = (await d.ok('table')).trimEnd().split('\n');
    expect(table).toEqual([
      `base: 0 16384 snapshot-origin ${path.join(dir, 'base.img')}`,
      `s1: 0 16384 snapshot base ${path.join(d.dataDir, 'cow', 's1.cow')} P 8`,
      `s2: 0 16384 snapshot base ${path.join(dir, 's2.cow')} PO 16`,
    ]);
    expect(await d.ok('status', 's1', '--json')).toEqual([{ name: 's1', start: 0, sectors: 16384, target: 'snapshot', info: '16/4096 16' }]);
    expect(await d.ok('table', 'base', '--json')).toEqual([{ name: 'base', start: 0, sectors: 16384, target: 'snapshot-origin', args: [path.join(dir, 'base.img')] }]);
    await expectExit(['status', 'nope'], EXIT.NOT_FOUND, /no origin or snapshot named nope/);
    await expectExit(['table', 'bad/x'], EXIT.INVALID, /invalid name/);
  });

  it('prints help for every command', async () => {
    const commands = [[], ['daemon'], ['origin'], ['origin', 'add'], ['origin', 'remove'], ['origin', 'list'], ['snapshot'], ['snapshot', 'create'], ['snapshot', 'remove'], ['snapshot', 'list'], ['status'], ['table'], ['attach'], ['detach']];
    for (const c of commands) {
      const r = await runCli([...c, '--help']);
      expect({ c, code: r.code }).toEqual({ c, code: 0 });
      expect(r.stdout).toMatch(/Usage: nbdsnap/);
    }
    expect((await runCli(['--help'])).stdout).toMatch(/Exit codes:/);
    expect((await runCli(['snapshot', 'remove', '--help'])).stdout).toMatch(/COW file the daemon\s+created \(--size\) is deleted/);
  });
});

describe('daemon unreachable', () => {
  it('is one line and exit code 6 for every client command', async () => {
    const control = path.join(dir, 'no-daemon.sock');
    for (const args of [['origin', 'list'], ['snapshot', 'list', '--json'], ['status'], ['table', 'x'], ['origin', 'add', 'x', '/tmp'], ['attach', 'x', '/dev/nbd0']]) {
      const r = await runCli([...args, '--control', control]);
      expect({ args, code: r.code }).toEqual({ args, code: EXIT.UNREACHABLE });
      expect(r.stderr).toMatch(/^nbdsnap: cannot reach the daemon at .*no-daemon\.sock \(ENOENT\); is `nbdsnap daemon` running\?\n$/);
    }
    const viaEnv = await runCli(['status'], { NBDSNAP_CONTROL: control });
    expect(viaEnv.code).toBe(EXIT.UNREACHABLE);
    expect((await runCli(['status'], { NBDSNAP_CONTROL: d.control })).code).toBe(0);
    expect((await runCli(['status'], { NBDSNAP_CONTROL: undefined, NBDSNAP_DATA_DIR: d.dataDir })).code).toBe(0);
  });
});

describe('attach and detach', () => {
  it('checks its arguments before running nbd-client', async () => {
    await expectExit(['attach', 's1', '/dev/sda'], EXIT.INVALID, /not an NBD device/);
    await expectExit(['attach', 's1', '/dev/nbd0', '--connections', '0'], EXIT.INVALID, /--connections/);
    await expectExit(['attach', 's1', '/dev/nbd0', '--connections', 'many'], EXIT.INVALID, /--connections/);
    await expectExit(['attach', 's1', '/dev/nbd0', '--timeout', '-1'], EXIT.INVALID, /--timeout/);
    await expectExit(['attach', 's1', '/dev/nbd0', '--block-size', '1000'], EXIT.INVALID, /--block-size/);
    await expectExit(['attach', 's1', '/dev/nbd0', '--block-size', '8192'], EXIT.INVALID, /--block-size/);
    await expectExit(['attach', 'nope', '/dev/nbd0'], EXIT.NOT_FOUND, /no origin or snapshot named nope/);
    const detach = await runCli(['detach', '/etc/passwd']);
    expect([detach.code, detach.stderr]).toEqual([EXIT.INVALID, 'nbdsnap: not an NBD device path: "/etc/passwd" (expected /dev/nbdN)\n']);
  });

  it('runs nbd-client with the daemon\'s socket, the export name and block size 4096', async () => {
    const fake = path.join(dir, 'fake-nbd-client');
    const argsFile = path.join(dir, 'nbd-client-args');
    fs.writeFileSync(fake, `#!/bin/sh\nprintf '%s\\n' "$@" > ${argsFile}\n`, { mode: 0o755 });
    const r = await runCli(['attach', 's1', '/dev/nbd3', '--connections', '4', '--timeout', '30', '--control', d.control], { NBDSNAP_NBD_CLIENT: fake });
    expect(r.code).toBe(0);
    expect(fs.readFileSync(argsFile, 'utf8').trim().split('\n')).toEqual(['-unix', d.nbdSocket, '/dev/nbd3', '-N', 's1', '-b', '4096', '-C', '4', '-t', '30']);
    expect((await runCli(['detach', '/dev/nbd3'], { NBDSNAP_NBD_CLIENT: fake })).code).toBe(0);
    expect(fs.readFileSync(argsFile, 'utf8').trim().split('\n')).toEqual(['-d', '/dev/nbd3']);
  });

  it('reports nbd-client failures (no nbd driver here) and a missing nbd-client in one line', async () => {
    const r = await d.cli('attach', 's1', '/dev/nbd0');
    expect(r.code).toBe(EXIT.TOOL);
    expect(r.stderr).toMatch(/^nbdsnap: nbd-client -unix .* failed \(exit \d+\)/);
    const missing = await runCli(['detach', '/dev/nbd0'], { NBDSNAP_NBD_CLIENT: path.join(dir, 'no-such-binary') });
    expect(missing.code).toBe(EXIT.TOOL);
    expect(missing.stderr).toMatch(/not found \(install the nbd-client package\)/);
  });
});

describe('removal', () => {
  it('refuses to remove a snapshot with a connected client unless forced', async () => {
    const client = await holdConnection(d, 's1', 'snapshot');
    try {
      await expectExit(['snapshot', 'remove', 's1'], EXIT.BUSY, /1 connected client/);
      await expectExit(['origin', 'remove', 'base'], EXIT.BUSY, /has snapshots \(s1, s2\)/);
      expect(await d.ok('snapshot', 'remove', 's1', '--force', '--json')).toEqual({ removed: ['s1'] });
    } finally {
      await client.close();
    }
    expect(fs.existsSync(path.join(d.dataDir, 'cow', 's1.cow'))).toBe(false);
  });

  it('removes a snapshot: an external COW stays, unknown names are NOT_FOUND', async () => {
    await expectExit(['snapshot', 'remove', 's1'], EXIT.NOT_FOUND, /no snapshot named s1/);
    await expectExit(['snapshot', 'remove', 'base'], EXIT.NOT_FOUND, /it is an origin/);
    await d.ok('snapshot', 'create', 's3', '--origin', 'base', '--size', '1M');
    await d.ok('snapshot', 'remove', 's2');
    expect(fs.existsSync(path.join(dir, 's2.cow'))).toBe(true);
    expect((await d.ok('snapshot', 'list', '--json')).map((s: { name: string }) => s.name)).toEqual(['s3']);
  });

  it('removes an origin with --force, with its snapshots and the COW files it created', async () => {
    await expectExit(['origin', 'remove', 'nope'], EXIT.NOT_FOUND, /no origin named nope/);
    await expectExit(['origin', 'remove', 's3'], EXIT.NOT_FOUND, /it is a snapshot/);
    await expectExit(['origin', 'remove', 'base'], EXIT.BUSY, /has snapshots \(s3\)/);
    expect(await d.ok('origin', 'remove', 'base', '--force', '--json')).toEqual({ removed: ['s3', 'base'] });
    expect(fs.existsSync(path.join(d.dataDir, 'cow', 's3.cow'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'base.img'))).toBe(true);
    expect(await d.ok('origin', 'list', '--json')).toEqual([]);
    expect(await d.ok('status', '--json')).toEqual([]);
  });

  it('refuses to remove an origin with a connected client unless forced', async () => {
    await d.ok('origin', 'add', 'busy', file('busy.img', MiB));
    const client = await holdConnection(d, 'busy', 'origin');
    try {
      await expectExit(['origin', 'remove', 'busy'], EXIT.BUSY, /busy has 1 connected client/);
      expect(await d.ok('origin', 'remove', 'busy', '--force', '--json')).toEqual({ removed: ['busy'] });
    } finally {
      await client.close();
    }
  });
});
