import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../block/memory-device.ts';
import { silentLogger } from '../log.ts';
import { AutoExtendingStore } from './auto-extend.ts';
import { openStore } from './open-store.ts';

const CHUNK = 4096; // 8 sectors

async function setup(chunks: number, threshold: number, percent: number, grow?: (size: number) => number) {
  const cow = new MemoryDevice(chunks * CHUNK);
  const inner = await openStore('P', cow, { chunkSectors: 8 });
  inner.load(() => undefined);
  const growCow = grow ?? ((size: number) => (cow.resize(size), cow.size));
  return { cow, store: new AutoExtendingStore(inner, { threshold, percent }, growCow, silentLogger()) };
}

describe('auto-extend', () => {
  it('grows the COW before an allocation reaches the threshold, by the percent, never filling it', async () => {
    const { cow, store } = await setup(16, 50, 50);
    for (let i = 0; i < 500; i++) {
      const chunk = store.prepare();
      expect((chunk + 1) * CHUNK).toBeLessThanOrEqual(cow.size);
      const u = store.usage();
      expect(u.allocatedSectors / u.totalSectors).toBeLessThan(0.5);
    }
    expect(store.extensions).toBeGreaterThan(3);
    expect(cow.size % CHUNK).toBe(0);
    expect(store.state).toBe('valid');
  });

  it('never grows at threshold 100 (off), so the store fills as without auto-extend', async () => {
    const { store } = await setup(8, 100, 50, () => {
      throw new Error('must not grow');
    });
    expect(() => {
      for (let i = 0; i < 10; i++) store.prepare();
    }).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    expect(store.extensions).toBe(0);
  });

  it('a growth that fails is logged once and the store fills as any full store', async () => {
    let calls = 0;
    const { store } = await setup(8, 50, 50, () => {
      calls++;
      throw Object.assign(new Error('no room'), { code: 'ENOSPC' });
    });
    expect(() => {
      for (let i = 0; i < 10; i++) store.prepare();
    }).toThrow(expect.objectContaining({ errno: 'ENOSPC' }));
    expect(calls).toBe(1);
    expect(store.extensions).toBe(0);
  });
});
