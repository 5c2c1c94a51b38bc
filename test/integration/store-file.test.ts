// The persistent store on a real file: the COW never grows by itself, growing the file and
// calling resize() makes the new space usable, and a reopened file keeps everything.
import { mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileDevice } from '../../src/block/file-device.ts';
import { openStore } from '../../src/store/open-store.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'store-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('persistent store on a file', () => {
  it('enforces the file size, grows with resize(), and reopens intact', async () => {
    const file = path.join(dir, 'cow.img');
    const chunkBytes = 4096;
    const cow = FileDevice.open(file, { createSize: 40 * chunkBytes });
    const store = await openStore('P', cow, { chunkSectors: 8 });
    const chunks: number[] = [];
    expect(() => {
      for (;;) chunks.push(store.prepare());
    }).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    expect(chunks).toHaveLength(38);
    await Promise.all(chunks.map((n, i) => cow.write(Buffer.alloc(chunkBytes, i), n * chunkBytes).then(() => store.commit(i, n))));
    expect(statSync(file).size).toBe(40 * chunkBytes);
    expect(store.status()).toBe('320/320 16');

    truncateSync(file, 60 * chunkBytes);
    expect(() => store.prepare()).toThrow(expect.objectContaining({ errno: 'ENOSPC' })); // not yet seen
    expect(store.resize()).toBe(60 * chunkBytes);
    expect(store.status()).toBe('320/480 16');
    const more = store.prepare();
    expect(more).toBe(40);
    await store.commit(100, more);
    await store.close();
    await cow.close();

    const again = FileDevice.open(file);
    const reopened = await openStore('P', again, { chunkSectors: 8 });
    const loaded: [number, number][] = [];
    reopened.load((o, n) => loaded.push([o, n]));
    expect(loaded).toEqual([...chunks.map((n, i) => [i, n]), [100, 40]]);
    expect(reopened.status()).toBe('328/480 16');
    await again.close();
  });
});
