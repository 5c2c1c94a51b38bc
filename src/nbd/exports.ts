// What the NBD server serves: named exports, each backed by one BlockDevice shared by every
// connection to it (so FLUSH on one connection covers writes from all: CAN_MULTI_CONN).
import type { BlockDevice, Extent } from '../block/device.ts';

/**
 * Dirty bitmaps an export offers as `qemu:dirty-bitmap:<name>` metadata contexts (qemu's
 * convention: status bit 0 = dirty). Answered from memory, so synchronous.
 */
export interface DirtyBitmaps {
  /** The bitmap names a client may select now (LIST/SET_META_CONTEXT). */
  names(): string[];
  /**
   * Bitmap `name` from `offset`: contiguous extents with flags 1 (dirty) or 0 (clean), at least one,
   * at most `maxExtents`, covering `length` bytes or less. undefined: the bitmap is gone or unusable.
   */
  extents(name: string, length: number, offset: number, maxExtents: number): Extent[] | undefined;
}

export interface NbdExport {
  /** '' is the default export. */
  name: string;
  description?: string;
  /** Shared by every connection to this export (multi-conn). */
  device: BlockDevice;
  /** Force read-only even if the device is writable. */
  readOnly?: boolean;
  /** Dirty bitmaps served as metadata contexts besides base:allocation (meta-contexts.ts). */
  dirtyBitmaps?: DirtyBitmaps;
}

export interface ExportProvider {
  /** Looked up at GO/INFO/EXPORT_NAME time. */
  get(name: string): NbdExport | undefined;
  /** For NBD_OPT_LIST. */
  list(): NbdExport[];
}

/** A fixed set of exports. */
export function staticExports(exports: NbdExport[]): ExportProvider {
  const byName = new Map(exports.map((e) => [e.name, e]));
  return { get: (name) => byName.get(name), list: () => [...byName.values()] };
}

/** True when clients must not write: forced by the export or by the device. */
export function isReadOnly(exp: NbdExport): boolean {
  return exp.readOnly === true || exp.device.readOnly;
}
