// LIST/SET_META_CONTEXT query rules and BLOCK_STATUS context lookups (meta-contexts.ts).
import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../block/memory-device.ts';
import type { NbdExport } from './exports.ts';
import { clipExtents } from './commands.ts';
import { MAX_STATUS_EXTENTS, contextExtents, listMetaContexts, selectMetaContexts } from './meta-contexts.ts';

const bitmaps = new Map([['s1', [{ length: 4096, flags: 1 }]], ['s2', [{ length: 4096, flags: 0 }]]]);
const withBitmaps: NbdExport = {
  name: 'o',
  device: new MemoryDevice(1 << 20),
  dirtyBitmaps: { names: () => [...bitmaps.keys()], extents: (name) => bitmaps.get(name) },
};
const plain: NbdExport = { name: 'p', device: new MemoryDevice(1 << 20) };
const ALL = ['base:allocation', 'qemu:dirty-bitmap:s1', 'qemu:dirty-bitmap:s2'];

describe('listMetaContexts', () => {
  it.each([
    [[], ALL],
    [['base:'], ['base:allocation']],
    [['qemu:'], ALL.slice(1)],
    [['qemu:dirty-bitmap:'], ALL.slice(1)],
    [['qemu:dirty-bitmap:s2', 'base:allocation'], ['base:allocation', 'qemu:dirty-bitmap:s2']],
    [['qemu:dirty-bitmap:s2', 'qemu:dirty-bitmap:s2', 'qemu:'], ALL.slice(1)],
    [['qemu:dirty-bitmap:nosuch', 'qemu:dirty-bitmap', 'qemu:dirty-', 'x-other:', 'base:allocation:', ':', ''], []],
  ])('queries %j list %j', (queries, expected) => {
    expect(listMetaContexts(withBitmaps, queries)).toEqual(expected);
  });

  it('lists only base:allocation on an export without bitmaps', () => {
    expect(listMetaContexts(plain, [])).toEqual(['base:allocation']);
    expect(listMetaContexts(plain, ['qemu:'])).toEqual([]);
  });
});

describe('selectMetaContexts', () => {
  it('selects exact names once each, with distinct nonzero IDs (base:allocation is 1)', () => {
    const selected = selectMetaContexts(withBitmaps, ['qemu:dirty-bitmap:s2', 'base:allocation', 'qemu:dirty-bitmap:s2', 'qemu:dirty-bitmap:s1']);
    expect(selected).toEqual([
      { id: 2, name: 'qemu:dirty-bitmap:s2', bitmap: 's2' },
      { id: 1, name: 'base:allocation' },
      { id: 3, name: 'qemu:dirty-bitmap:s1', bitmap: 's1' },
    ]);
  });

  it('selects nothing for wildcards, unknown names or no queries', () => {
    expect(selectMetaContexts(withBitmaps, ['qemu:', 'qemu:dirty-bitmap:', 'base:', 'qemu:dirty-bitmap:nosuch'])).toEqual([]);
    expect(selectMetaContexts(withBitmaps, [])).toEqual([]);
    expect(selectMetaContexts(plain, ['qemu:dirty-bitmap:s1'])).toEqual([]);
  });
});

describe('contextExtents', () => {
  it("answers base:allocation from the device and a bitmap from the export's provider", async () => {
    expect(await contextExtents(withBitmaps, { id: 1, name: 'base:allocation' }, 4096, 0)).toEqual([]);
    expect(await contextExtents(withBitmaps, { id: 2, name: 'qemu:dirty-bitmap:s1', bitmap: 's1' }, 4096, 0)).toEqual([{ length: 4096, flags: 1 }]);
  });

  it('fails with EIO for a bitmap that is gone, never reporting it clean', async () => {
    await expect(contextExtents(withBitmaps, { id: 2, name: 'qemu:dirty-bitmap:gone', bitmap: 'gone' }, 4096, 0)).rejects.toMatchObject({ errno: 'EIO' });
    await expect(contextExtents(plain, { id: 2, name: 'qemu:dirty-bitmap:s1', bitmap: 's1' }, 4096, 0)).rejects.toMatchObject({ errno: 'EIO' });
  });
});

describe('clipExtents with many runs', () => {
  it('answers at most MAX_STATUS_EXTENTS descriptors, a prefix of the range', () => {
    const runs = Array.from({ length: MAX_STATUS_EXTENTS + 10 }, (_, i) => ({ length: 512, flags: i % 2 }));
    const clipped = clipExtents(runs, runs.length * 512, false);
    expect(clipped).toHaveLength(MAX_STATUS_EXTENTS);
    expect(clipped).toEqual(runs.slice(0, MAX_STATUS_EXTENTS));
  });
});
