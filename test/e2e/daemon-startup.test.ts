// Startup with damage: a snapshot whose COW is missing or corrupt, and an origin whose file is
// gone, are reported as failed (list, status) while everything else is restored and served; a
// failed snapshot or origin can still be removed.
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { model, readExport, startDaemon, tempDir, writePattern } from '../support/daemon-harness.ts';

const MiB = 1 << 20;
const dir = tempDir('daemon-startup-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('startup with missing or corrupt files', () => {
  it('reports the damaged exports as failed and serves the rest', async () => {
    for (const n of ['a', 'b']) fs.writeFileSync(path.join(dir, `${n}.img`), model(2 * MiB, [[0, 2 * MiB, 0x11]]));
    let d = await startDaemon(dir);
    await d.ok('origin', 'add', 'a', path.join(dir, 'a.img'));
    await d.ok('origin', 'add', 'b', path.join(dir, 'b.img'));
    for (const s of ['good', 'missing', 'corrupt']) await d.ok('snapshot', 'create', s, '--origin', 'a', '--size', '1M');
    await d.ok('snapshot', 'create', 'b1', '--origin', 'b', '--size', '1M');
    await writePattern(d, 'a', 0, 4096, 0x22);
    expect((await d.stop()).code).toBe(0);

    fs.rmSync(path.join(d.dataDir, 'cow', 'missing.cow'));
    fs.writeFileSync(path.join(d.dataDir, 'cow', 'corrupt.cow'), Buffer.from('garbage!'), { flag: 'r+' });
    fs.renameSync(path.join(dir, 'b.img'), path.join(dir, 'b.moved'));

    d = await startDaemon(dir);
    try {
      const snaps = await d.ok('snapshot', 'list', '--json');
      const byName = Object.fromEntries(snaps.map((s: { name: string }) => [s.name, s]));
      expect(byName.good).toMatchObject({ state: 'active', error: null });
      expect(byName.missing).toMatchObject({ state: 'failed', error: expect.stringMatching(/ENOENT/), cowSizeBytes: null, dataPercent: null });
      expect(byName.corrupt).toMatchObject({ state: 'failed', error: expect.any(String) });
      expect(byName.b1).toMatchObject({ state: 'failed', error: 'origin b is not available' });
      const origins = await d.ok('origin', 'list', '--json');
      expect(origins.map((o: { name: string; state: string }) => `${o.name}:${o.state}`)).toEqual(['a:active', 'b:failed']);
      expect(await d.ok('status')).toMatch(/^missing: 0 4096 snapshot Failed$/m);
      expect(await d.ok('snapshot', 'list')).toMatch(/^corrupt\s+a\s+P\s+8\s+2\.00M\s+1\.00M\s+failed\s+0$/m);

      expect((await readExport(d, 'good')).equals(model(2 * MiB, [[0, 2 * MiB, 0x11]]))).toBe(true);
      expect((await readExport(d, 'a')).subarray(0, 4096).every((x) => x === 0x22)).toBe(true);
      for (const name of ['missing', 'corrupt', 'b', 'b1']) await expect(readExport(d, name)).rejects.toThrow();

      await d.ok('snapshot', 'remove', 'missing');
      await d.ok('snapshot', 'remove', 'corrupt');
      expect(fs.existsSync(path.join(d.dataDir, 'cow', 'corrupt.cow'))).toBe(false);
      expect(await d.ok('origin', 'remove', 'b', '--force', '--json')).toEqual({ removed: ['b1', 'b'] });
      expect((await d.ok('snapshot', 'list', '--json')).map((s: { name: string }) => s.name)).toEqual(['good']);
    } finally {
      await d.stop();
    }
  });
});
