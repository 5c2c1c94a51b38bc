// The snapshot.diff reply against the control API's reply limit (src/daemon/snapshot-diff.ts): the
// most fragmented map it accepts, with the longest numbers, still fits in MAX_REPLY_BYTES, and one
// extent more is refused with a message that points to the NBD meta context.
import { describe, expect, it } from 'vitest';
import { MAX_REPLY_BYTES } from '../../src/control/api.ts';
import type { DaemonContext } from '../../src/daemon/context.ts';
import { MAX_DIFF_EXTENTS, snapshotDiff } from '../../src/daemon/snapshot-diff.ts';
import { ChangedMap } from '../../src/targets/changed-map.ts';

const CHUNK = 2 ** 30; // 1 GiB chunks, so offsets have 16 digits without marking a huge map
const SIZE = 2 ** 53 - CHUNK; // the largest snapshot a JS number describes exactly

/** A daemon context holding one served snapshot `s` of origin `o` whose map has `extents` changed extents near the end. */
function contextWith(extents: number): DaemonContext {
  const changed = new ChangedMap(SIZE, CHUNK);
  const last = SIZE / CHUNK - 1;
  for (let i = 0; i < extents; i++) changed.mark(last - 2 * i);
  const target = { changed, size: SIZE, chunkBytes: CHUNK, store: { state: 'valid' } };
  const snapshot = { row: { name: 's' }, target, state: 'serving', error: null };
  const origin = { row: { name: 'o' }, snapshots: new Map([['s', snapshot]]) };
  return {
    exports: { findSnapshot: (name: string) => (name === 's' ? { origin, snapshot } : undefined) },
    catalog: { nameOwner: () => null },
    config: { nbdSocket: '/run/nbdsnap/nbd.sock' },
  } as unknown as DaemonContext;
}

describe('snapshot.diff reply size', () => {
  it('fits the largest accepted map in one control reply', async () => {
    const diff = await snapshotDiff(contextWith(MAX_DIFF_EXTENTS), 's');
    expect(diff.extents).toHaveLength(MAX_DIFF_EXTENTS);
    expect(String(diff.extents[0].offset)).toHaveLength(16);
    const line = JSON.stringify({ ok: true, result: diff });
    expect(Buffer.byteLength(line) + 1).toBeLessThan(MAX_REPLY_BYTES);
  });

  it('refuses one extent more, pointing to the NBD meta context', async () => {
    await expect(snapshotDiff(contextWith(MAX_DIFF_EXTENTS + 1), 's')).rejects.toThrow(
      `snapshot s has more than ${MAX_DIFF_EXTENTS} changed extents, too many for one reply: read its map over NBD in windows instead, ` +
        "e.g. nbdinfo --map=qemu:dirty-bitmap:s 'nbd+unix:///o?socket=/run/nbdsnap/nbd.sock'",
    );
  });
});
