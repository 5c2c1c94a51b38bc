// A snapshot that failed to start while its origin was served has missed origin writes: it must
// stay failed even when its COW file comes back, never be served with a stale image.
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { model, readExport, startDaemon, tempDir, writePattern } from '../support/daemon-harness.ts';

const MiB = 1 << 20;
const dir = tempDir('daemon-failed-snap-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('a snapshot that missed origin writes', () => {
  it('stays failed after its COW is restored', async () => {
    fs.writeFileSync(path.join(dir, 'a.img'), model(2 * MiB, [[0, 2 * MiB, 0x11]]));
    let d = await startDaemon(dir);
    await d.ok('origin', 'add', 'a', path.join(dir, 'a.img'));
    await d.ok('snapshot', 'create', 's', '--origin', 'a', '--size', '1M');
    expect((await d.stop()).code).toBe(0);

    const cow = path.join(d.dataDir, 'cow', 's.cow');
    fs.renameSync(cow, `${cow}.away`);
    d = await startDaemon(dir);
    await writePattern(d, 'a', 0, 4096, 0x22); // s is not there to preserve chunk 0
    expect((await d.stop()).code).toBe(0);

    fs.renameSync(`${cow}.away`, cow);
    d = await startDaemon(dir);
    try {
      const [snap] = await d.ok('snapshot', 'list', '--json');
      expect(snap).toMatchObject({ name: 's', state: 'failed', error: expect.stringMatching(/point in time is lost/) });
      await expect(readExport(d, 's')).rejects.toThrow();
      expect(await d.ok('status', 's')).toBe('s: 0 4096 snapshot Failed\n');
      await d.ok('snapshot', 'remove', 's');
    } finally {
      await d.stop();
    }
  });
});
