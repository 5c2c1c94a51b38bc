// snapshot merge through the real daemon and real clients: the origin shows the snapshot's content
// from the moment the command returns, while a client keeps writing to it; status shows
// snapshot-merge, snapshot list MERGE% and state merging; at the end the origin is the snapshot's
// content plus the writes made meanwhile, another snapshot kept its point in time, and the merged
// snapshot is gone with its COW file. A SIGKILL mid-merge resumes at the next start. Refusals
// have clear errors and exit codes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mustRun, run } from '../support/exec.ts';
import { holdConnection, nbdUri, readExport, startDaemon, tempDir, type DaemonHandle } from '../support/daemon-harness.ts';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const daemons: DaemonHandle[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop('SIGKILL');
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function daemonIn(dir: string, env: Record<string, string> = {}): Promise<DaemonHandle> {
  const d = await startDaemon(dir, { env });
  daemons.push(d);
  return d;
}

async function info(d: DaemonHandle, name: string): Promise<any> {
  return (await d.ok('snapshot', 'list', '--json')).find((s: any) => s.name === name);
}

/** Poll the daemon until `done` says so (the merge runs in the background), within 120 s. */
async function until(what: string, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Write 4 KiB of random data at each of `blocks` (4 KiB block numbers) through qemu-io; returns what was written. */
async function scatter(d: DaemonHandle, name: string, blocks: number[], image: Buffer): Promise<void> {
  const file = path.join(d.dir, `scatter-${name}.cmds`);
  const cmds: string[] = [];
  for (const b of blocks) {
    const data = crypto.randomBytes(4096);
    const byte = data[0];
    image.fill(byte, b * 4096, (b + 1) * 4096);
    cmds.push(`write -P ${byte} ${b * 4096} 4096`);
  }
  fs.writeFileSync(file, cmds.join('\n') + '\n');
  const r = await run('sh', ['-c', `qemu-io -f raw '${nbdUri(d, name)}' < ${file}`]);
  if (r.code !== 0 || /error|fail/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io failed: ${r.stdout}${r.stderr}`);
}

/** An origin of random data, snapshots s1 (to merge) and s2, and divergent writes to all three. */
async function setup(env: Record<string, string> = {}): Promise<{ d: DaemonHandle; s1: Buffer; s2: Buffer; base: string }> {
  const dir = tempDir('merge-e2e-');
  dirs.push(dir);
  const base = path.join(dir, 'base.img');
  fs.writeFileSync(base, crypto.randomBytes(SIZE));
  const d = await daemonIn(dir, env);
  await d.ok('origin', 'add', 'base', base);
  await d.ok('snapshot', 'create', 's1', '--origin', 'base', '--size', '24M');
  await d.ok('snapshot', 'create', 's2', '--origin', 'base', '--size', '24M', '--chunk-size', '16');
  const blocks = (n: number, salt: number) => [...new Set(Array.from({ length: n }, (_, i) => (i * 7919 + salt * 104729) % (SIZE / 4096)))];
  const originImage = fs.readFileSync(base);
  await scatter(d, 'base', blocks(800, 1), originImage); // preserved in s1 and s2: s1's chunks not in run order
  const s1 = await readExport(d, 's1');
  await scatter(d, 's1', blocks(800, 2), s1);
  expect((await readExport(d, 's1')).equals(s1)).toBe(true);
  const s2 = await readExport(d, 's2');
  return { d, s1, s2, base };
}

describe('snapshot merge', () => {
  it('rolls the origin back online: snapshot content at once, writes during the merge kept, other snapshots intact', async () => {
    const { d, s1, s2, base } = await setup();
    const started = await d.ok('snapshot', 'merge', 's1', '--json');
    expect(started).toMatchObject({ name: 's1', state: 'merging' });
    expect(started.merge.totalChunks).toBeGreaterThan(800);
    const expected = Buffer.from(s1);
    // While merging: the origin export shows the snapshot; a client writes to it.
    const status = await d.ok('status', '--json');
    const originLine = status.find((l: any) => l.name === 'base');
    expect(['snapshot-merge', 'snapshot-origin']).toContain(originLine.target); // snapshot-origin only if it is already done
    await scatter(d, 'base', [3, 100, 2000, 3000, 4000], expected);
    await until('the merge to finish', async () => (await info(d, 's1')) === undefined);
    expect((await readExport(d, 'base')).equals(expected)).toBe(true);
    expect(fs.readFileSync(base).equals(expected)).toBe(true); // on the origin file itself, not routed
    expect((await readExport(d, 's2')).equals(s2)).toBe(true);
    expect(fs.existsSync(path.join(d.dataDir, 'cow', 's1.cow'))).toBe(false);
    expect((await d.ok('status', 'base', '--json'))[0]).toMatchObject({ target: 'snapshot-origin' });
    expect(d.log()).toMatch(/merge complete/);
  }, 180_000);

  it('shows snapshot-merge and MERGE% while it runs, and resumes after a SIGKILL to the same origin', async () => {
    // One chunk per batch, and held after the first one while it is watched (NBDSNAP_MERGE_HOLD).
    const holdDir = tempDir('merge-hold-');
    dirs.push(holdDir);
    const hold = path.join(holdDir, 'hold');
    fs.writeFileSync(hold, '');
    const { d, s1, s2, base } = await setup({ NBDSNAP_MERGE_BATCH_BYTES: '4096', NBDSNAP_MERGE_HOLD: hold });
    await d.ok('snapshot', 'merge', 's1');
    const during = await info(d, 's1');
    expect(during).toBeDefined();
    {
      expect(during.state).toBe('merging');
      expect(during.merge.percent).toBeGreaterThanOrEqual(0);
      expect(during.merge.percent).toBeLessThan(100);
      const line = (await d.ok('status', 'base', '--json'))[0];
      expect(line.target).toBe('snapshot-merge');
      expect(line.info).toMatch(/^\d+\/\d+ \d+$/);
      const text: string = await d.ok('snapshot', 'list');
      expect(text.split('\n')[0]).toMatch(/CONNS\s+MERGE%$/);
      expect(text).toMatch(/^s1\s.*merging\s+\d+\s+\d+\.\d\d$/m);
    }
    await d.stop('SIGKILL');
    daemons.splice(daemons.indexOf(d), 1);
    const again = await daemonIn(d.dir);
    // Whatever was merged before the kill, the origin shows the snapshot at once after the restart.
    expect((await readExport(again, 'base')).equals(s1)).toBe(true);
    await until('the resumed merge to finish', async () => (await info(again, 's1')) === undefined);
    expect(fs.readFileSync(base).equals(s1)).toBe(true);
    expect((await readExport(again, 's2')).equals(s2)).toBe(true);
  }, 180_000);

  it('a daemon stopped cleanly mid-merge stops the merge first and resumes it at the next start', async () => {
    const { d, s1, s2, base } = await setup();
    await d.ok('snapshot', 'merge', 's1');
    expect((await d.stop('SIGTERM')).code).toBe(0);
    daemons.splice(daemons.indexOf(d), 1);
    const again = await daemonIn(d.dir);
    await until('the resumed merge to finish', async () => (await info(again, 's1')) === undefined);
    expect(fs.readFileSync(base).equals(s1)).toBe(true);
    expect((await readExport(again, 's2')).equals(s2)).toBe(true);
  }, 180_000);

  it('--wait follows it to the end with JSON progress lines', async () => {
    const { d, s1 } = await setup();
    const r = await d.cli('snapshot', 'merge', 's1', '--wait', '--json');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ name: 's1', origin: 'base', state: 'merged', percent: 100 });
    expect(lines.every((l) => typeof l.percent === 'number' && l.totalBytes > 0)).toBe(true);
    expect((await readExport(d, 'base')).equals(s1)).toBe(true);
  }, 180_000);

  it('refuses N, invalid, busy and unknown snapshots with exit codes, changing nothing', async () => {
    const dir = tempDir('merge-e2e-');
    dirs.push(dir);
    const base = path.join(dir, 'base.img');
    fs.writeFileSync(base, Buffer.alloc(8 * MiB, 0x11));
    const d = await daemonIn(dir);
    await d.ok('origin', 'add', 'base', base);
    await d.ok('snapshot', 'create', 'n', '--origin', 'base', '--size', '8M', '--persistent', 'N');
    await d.ok('snapshot', 'create', 'tiny', '--origin', 'base', '--size', '16K'); // fills at once: invalid
    await d.ok('snapshot', 'create', 'p', '--origin', 'base', '--size', '8M');
    await mustRun('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 1M', nbdUri(d, 'base')]);
    expect((await info(d, 'tiny')).state).toBe('invalid');
    const n = await d.cli('snapshot', 'merge', 'n');
    expect([n.code, n.stderr]).toEqual([7, expect.stringMatching(/transient \(N\)/)]);
    const tiny = await d.cli('snapshot', 'merge', 'tiny');
    expect([tiny.code, tiny.stderr]).toEqual([7, expect.stringMatching(/invalid/)]);
    expect((await d.cli('snapshot', 'merge', 'nosuch')).code).toBe(3);
    expect((await d.cli('snapshot', 'merge', 'base')).code).toBe(3);
    const held = await holdConnection(d, 'p', 'snapshot');
    try {
      const busy = await d.cli('snapshot', 'merge', 'p');
      expect([busy.code, busy.stderr]).toEqual([5, expect.stringMatching(/connected client/)]);
      expect((await info(d, 'p')).state).toBe('active');
      expect((await d.ok('snapshot', 'merge', 'p', '--force', '--json')).state).toBe('merging');
    } finally {
      await held.close();
    }
    await until('the merge to finish', async () => (await info(d, 'p')) === undefined);
    expect((await readExport(d, 'base')).equals(Buffer.alloc(8 * MiB, 0x11))).toBe(true);
    expect((await d.cli('snapshot', 'merge', 'p')).code).toBe(3); // merged: gone
  }, 180_000);
});
