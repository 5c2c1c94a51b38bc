// `nbdsnap snapshot diff NAME [--json]` against the real daemon: "OFFSET LENGTH" lines on stdout
// with a summary on stderr, the JSON object, merged runs in the snapshot's chunk size (origin and
// snapshot writes alike), and clear refusals: an origin's name, an unknown name, and an invalid
// snapshot (whose map missed origin writes; it is not offered over NBD either).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../support/exec.ts';
import { nbdUri, startDaemon, tempDir, writePattern, type DaemonHandle } from '../support/daemon-harness.ts';

const KiB = 1024;
let d: DaemonHandle;
let dir: string;

beforeAll(async () => {
  dir = tempDir('dirty-bitmap-diff-');
  fs.writeFileSync(path.join(dir, 'base.img'), Buffer.alloc(0));
  fs.truncateSync(path.join(dir, 'base.img'), 8 * 1024 * KiB);
  d = await startDaemon(dir);
  await d.ok('origin', 'add', 'base', path.join(dir, 'base.img'));
  await d.ok('snapshot', 'create', 's1', '--origin', 'base', '--size', '4M', '--chunk-size', '16'); // 8 KiB chunks
  await writePattern(d, 'base', 10 * KiB, 4 * KiB, 1); // chunk 1
  await writePattern(d, 'base', 16 * KiB, 20 * KiB, 2); // chunks 2-4: merged with chunk 1
  await writePattern(d, 's1', 1024 * KiB, 512, 3); // a write to the snapshot itself: chunk 128
});
afterAll(async () => {
  await d?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('snapshot diff', () => {
  it('prints one OFFSET LENGTH line per merged extent, and a summary on stderr', async () => {
    const r = await d.cli('snapshot', 'diff', 's1');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${8 * KiB} ${32 * KiB}\n${1024 * KiB} ${8 * KiB}\n`);
    expect(r.stderr).toBe('snapshot s1 (of base): 2 extents, 40.00K changed of 8.00M (0.49%), chunk 8.00K\n');
  });

  it('--json gives the whole object', async () => {
    expect(await d.ok('snapshot', 'diff', 's1', '--json')).toEqual({
      name: 's1', origin: 'base', sizeBytes: 8 * 1024 * KiB, chunkBytes: 8 * KiB, changedBytes: 40 * KiB,
      extents: [{ offset: 8 * KiB, length: 32 * KiB }, { offset: 1024 * KiB, length: 8 * KiB }],
    });
  });

  it('refuses an origin, an unknown name and an invalid snapshot with clear messages', async () => {
    const origin = await d.cli('snapshot', 'diff', 'base');
    expect([origin.code, origin.stderr]).toEqual([3, 'nbdsnap: no snapshot named base (it is an origin; diff takes a snapshot)\n']);
    expect((await d.cli('snapshot', 'diff', 'nosuch')).code).toBe(3);
    expect((await d.cli('snapshot', 'diff', 'bad/name')).code).toBe(7);

    await d.ok('snapshot', 'create', 'tiny', '--origin', 'base', '--size', '64K'); // room for 14 chunks of 4 KiB
    for (let i = 0; i < 16; i++) await writePattern(d, 'base', 2048 * KiB + i * 8 * KiB, 512, 9);
    const tiny = (await d.ok('snapshot', 'list', '--json')).find((s: { name: string }) => s.name === 'tiny');
    expect(tiny.state).toBe('invalid');
    const r = await d.cli('snapshot', 'diff', 'tiny');
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/snapshot tiny is invalid: origin writes since were not recorded in it; it has no changed-chunk map/);
    const listed = await run('nbdinfo', [nbdUri(d, 'base')]);
    expect(listed.stdout).toMatch(/qemu:dirty-bitmap:s1/);
    expect(listed.stdout).not.toMatch(/qemu:dirty-bitmap:tiny/);
  });
});
