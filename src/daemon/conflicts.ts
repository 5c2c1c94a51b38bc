// Checks before anything is created: names unique across origins and snapshots, and a file or
// device used by at most one origin or snapshot (by identity, not spelling), mapped to the
// control API's error codes. Errors from opening devices and stores are mapped here too.
import { errorText } from '../common/error-text.ts';
import { ControlError } from '../control/api.ts';
import { isBlockError } from '../block/errors.ts';
import { DeviceInUseError } from '../block/device-claim.ts';
import { CorruptStoreError, StoreConfigError } from '../store/open-store.ts';
import type { DaemonContext } from './context.ts';
import { pathIdentity, type CheckedPath } from './paths.ts';

export function ensureNameFree(ctx: DaemonContext, name: string): void {
  const owner = ctx.catalog.nameOwner(name);
  if (owner) throw new ControlError('EXISTS', `the name ${name} is already used by ${owner === 'origin' ? 'an origin' : 'a snapshot'}`);
}

/** Refuse a path that an origin or snapshot already uses (same real path or same file/device). */
export function ensurePathFree(ctx: DaemonContext, checked: CheckedPath, field: string): void {
  const inUse = [
    ...ctx.catalog.listOrigins().map((o) => ({ name: o.name, path: o.path, what: 'origin' })),
    ...ctx.catalog.listSnapshots().map((s) => ({ name: s.name, path: s.cowPath, what: 'snapshot COW' })),
  ];
  for (const use of inUse) {
    if (use.path === checked.realPath || pathIdentity(use.path) === checked.identity) {
      throw new ControlError('EXISTS', `${field}: ${checked.realPath} is already used as the ${use.what} ${use.name}`);
    }
  }
}

/** Map an error from opening a device or store to a ControlError the user can act on. */
export function toControlError(err: unknown, what: string): ControlError {
  if (err instanceof ControlError) return err;
  if (err instanceof DeviceInUseError) return new ControlError('BUSY', `${what}: ${err.message}`, { cause: err });
  if (err instanceof StoreConfigError) return new ControlError('INVALID', `${what}: ${err.message}`, { cause: err });
  if (err instanceof CorruptStoreError) return new ControlError('INVALID', `${what}: not a usable COW store: ${err.message}`, { cause: err });
  if (isBlockError(err)) return new ControlError('INVALID', `${what}: ${err.errno}: ${err.message}`, { cause: err });
  const code = (err as NodeJS.ErrnoException)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    return new ControlError('INVALID', `${what}: ${(err as Error).message}`, { cause: err });
  }
  return new ControlError('INTERNAL', `${what}: ${errorText(err)}`, { cause: err });
}
