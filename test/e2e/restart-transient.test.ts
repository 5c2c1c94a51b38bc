// A transient (N) snapshot keeps its exceptions through a live restart (its map is carried to
// the successor, as the kernel hands it to a reloaded table), and through a restart whose
// successor fails (the old daemon takes it back); it still does not survive a stop.
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { readExport, startDaemon, stopDaemonChain, tempDir, writePattern, type DaemonHandle } from '../support/daemon-harness.ts';

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const daemons: DaemonHandle[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) await stopDaemonChain(d);
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function withTransient(env: Record<string, string> = {}): Promise<{ d: DaemonHandle; before: string }> {
  const dir = tempDir('restart-transient-');
  dirs.push(dir);
  const d = await startDaemon(dir, { env });
  daemons.push(d);
  const origin = `${dir}/origin.img`;
  fs.writeFileSync(origin, Buffer.alloc(16 * MiB, 0x01));
  await d.ok('origin', 'add', 'o', origin);
  await d.ok('snapshot', 'create', 'n', '--origin', 'o', '--size', '8M', '--persistent', 'N', '--chunk-size', '16');
  await writePattern(d, 'o', 0, 2 * MiB, 0x02); // copy-outs into n
  await writePattern(d, 'n', 4 * MiB, 1 * MiB, 0x03); // n's own writes
  return { d, before: sha(await readExport(d, 'n')) };
}

describe('transient snapshots across a live restart', () => {
  it('keep their content and allocation, and new exceptions go on from there', async () => {
    const { d, before } = await withTransient();
    const status = (await d.ok('status', 'n', '--json'))[0].info;
    for (let i = 0; i < 2; i++) expect((await d.ok('restart', '--wait', '--json')).state).toBe('done');
    expect((await d.ok('status', 'n', '--json'))[0].info).toBe(status);
    expect(sha(await readExport(d, 'n'))).toBe(before);
    await writePattern(d, 'o', 8 * MiB, 1 * MiB, 0x04); // more copy-outs, after the restarts
    expect(sha(await readExport(d, 'n'))).toBe(before);
    const origin = await readExport(d, 'o');
    expect(origin.subarray(8 * MiB, 9 * MiB).equals(Buffer.alloc(MiB, 0x04))).toBe(true);
  });

  it('come back whole when the successor fails and the old daemon takes over again', async () => {
    const { d, before } = await withTransient({ NBDSNAP_FAULT: 'restart:successor-before-ready' });
    const r = await d.cli('restart', '--wait');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/successor .* failed/);
    expect(sha(await readExport(d, 'n'))).toBe(before);
  });
});
