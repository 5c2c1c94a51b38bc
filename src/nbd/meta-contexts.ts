// Metadata contexts: which ones an export offers, what LIST_META_CONTEXT and SET_META_CONTEXT
// answer, and the extents NBD_CMD_BLOCK_STATUS reports for each selected one.
//
// Every export offers `base:allocation`; an export whose provider gives it dirty bitmaps also
// offers `qemu:dirty-bitmap:<name>` for each (qemu's namespace and convention, so qemu-img's
// x-dirty-bitmap and `nbdinfo --map=qemu:dirty-bitmap:NAME` read them). Queries, as qemu-nbd:
// - LIST with no queries lists every context; a query ending in ':' ("base:", "qemu:",
//   "qemu:dirty-bitmap:") lists every context it prefixes; other queries match a name exactly;
// - SET selects exact names only (a wildcard selects nothing, as in qemu), each once, with IDs
//   distinct and nonzero: base:allocation is always 1, bitmaps get 2, 3, ... in query order;
// - unknown names and namespaces are ignored.
import type { Extent } from '../block/device.ts';
import { NbdError } from './errno.ts';
import type { NbdExport } from './exports.ts';
import { BASE_ALLOCATION, DIRTY_BITMAP_PREFIX } from './wire.ts';

/** The context ID of base:allocation after SET_META_CONTEXT. */
export const BASE_ALLOCATION_ID = 1;

/**
 * Most descriptors in one BLOCK_STATUS chunk (512 KiB of them). The spec lets a server describe
 * less than the request; clients ask again from where the reply stopped.
 */
export const MAX_STATUS_EXTENTS = 65536;

/** A context selected by SET_META_CONTEXT. */
export interface MetaContext {
  id: number;
  name: string;
  /** For `qemu:dirty-bitmap:<bitmap>`: the bitmap's name; undefined for base:allocation. */
  bitmap?: string;
}

function contextNames(exp: NbdExport): string[] {
  const bitmaps = exp.dirtyBitmaps?.names() ?? [];
  return [BASE_ALLOCATION, ...bitmaps.map((name) => DIRTY_BITMAP_PREFIX + name)];
}

/** The context names LIST_META_CONTEXT answers for `queries` on `exp`. */
export function listMetaContexts(exp: NbdExport, queries: readonly string[]): string[] {
  const all = contextNames(exp);
  if (queries.length === 0) return all;
  return all.filter((name) => queries.some((q) => q === name || (q.endsWith(':') && name.startsWith(q))));
}

/** The contexts SET_META_CONTEXT selects for `queries` on `exp`. */
export function selectMetaContexts(exp: NbdExport, queries: readonly string[]): MetaContext[] {
  const offered = new Set(contextNames(exp));
  const selected: MetaContext[] = [];
  let nextId = BASE_ALLOCATION_ID + 1;
  for (const name of new Set(queries)) {
    if (!offered.has(name)) continue;
    if (name === BASE_ALLOCATION) selected.push({ id: BASE_ALLOCATION_ID, name });
    else selected.push({ id: nextId++, name, bitmap: name.slice(DIRTY_BITMAP_PREFIX.length) });
  }
  return selected;
}

/**
 * What `context` says about [offset, offset+length) of `exp`, before clipping (clipExtents).
 * A bitmap removed since SET (its snapshot removed or invalidated) fails the request with EIO:
 * reporting it clean would make an incremental backup skip changed data.
 */
export async function contextExtents(exp: NbdExport, context: MetaContext, length: number, offset: number): Promise<readonly Extent[]> {
  if (context.bitmap === undefined) return exp.device.extents ? exp.device.extents(length, offset) : [];
  const extents = exp.dirtyBitmaps?.extents(context.bitmap, length, offset, MAX_STATUS_EXTENTS);
  if (!extents || extents.length === 0) throw new NbdError('EIO', `dirty bitmap ${context.bitmap} is no longer available`);
  return extents;
}
