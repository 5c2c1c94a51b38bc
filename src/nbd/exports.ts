// What the NBD server serves: named exports, each backed by one BlockDevice shared by every
// connection to it (so FLUSH on one connection covers writes from all: CAN_MULTI_CONN).
import type { BlockDevice } from '../block/device.ts';

export interface NbdExport {
  /** '' is the default export. */
  name: string;
  description?: string;
  /** Shared by every connection to this export (multi-conn). */
  device: BlockDevice;
  /** Force read-only even if the device is writable. */
  readOnly?: boolean;
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
