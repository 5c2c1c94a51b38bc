// The one place where an error thrown below the NBD layer becomes an NBD errno on the wire
// (called only where a reply is built). Follows nbdkit's nbd_errno, except that errors which
// are neither BlockErrors nor Node system errors are bugs: they become EIO and are logged with
// their stack.
import { BlockError, Errno, isBlockError, type ErrnoName } from '../block/errors.ts';
import { errorText } from '../common/error-text.ts';
import { CmdFlag } from './wire.ts';
import type { Logger } from '../log.ts';

/** A per-request failure decided by the NBD layer itself (validation): a BlockError by another name. */
export class NbdError extends BlockError {
  override readonly name = 'NbdError';
}

/** A violation that closes the connection; never sent as a reply. */
export class ProtocolError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ProtocolError';
  }
}

/** Node system error codes -> NBD errno names (nbdkit's nbd_errno table). */
const SYSTEM_CODES: Readonly<Record<string, ErrnoName>> = {
  EPERM: 'EPERM',
  EROFS: 'EPERM',
  EIO: 'EIO',
  ENOMEM: 'ENOMEM',
  EDQUOT: 'ENOSPC',
  EFBIG: 'ENOSPC',
  ENOSPC: 'ENOSPC',
  ESHUTDOWN: 'ESHUTDOWN',
  ENOTSUP: 'ENOTSUP',
  EOPNOTSUPP: 'ENOTSUP',
  EOVERFLOW: 'EOVERFLOW',
  EINVAL: 'EINVAL',
};

function systemCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, syscall } = err as { code?: unknown; syscall?: unknown };
  return typeof code === 'string' && typeof syscall === 'string' ? code : undefined;
}

/** Narrow errno names that are only legal with a specific command flag. */
function restrict(name: ErrnoName, cmdFlags: number): ErrnoName {
  if (name === 'ENOTSUP' && !(cmdFlags & CmdFlag.FAST_ZERO)) return 'EINVAL';
  if (name === 'EOVERFLOW' && !(cmdFlags & CmdFlag.DF)) return 'EINVAL';
  return name;
}

/**
 * Map any thrown value to an NBD wire errno (never 0). `cmdFlags` are the request's flags:
 * ENOTSUP needs FAST_ZERO and EOVERFLOW needs DF, else they become EINVAL.
 */
export function toNbdErrno(err: unknown, cmdFlags: number, logger?: Logger): number {
  if (isBlockError(err)) return Errno[restrict(err.errno, cmdFlags)];
  const code = systemCode(err);
  if (code !== undefined) {
    const name = SYSTEM_CODES[code] ?? 'EINVAL';
    logger?.warn({ err }, `device error ${code} -> ${name}`);
    return Errno[restrict(name, cmdFlags)];
  }
  logger?.error({ err }, 'unexpected error in device operation, replying EIO');
  return Errno.EIO;
}

/** A short message for ERROR chunks (qemu reads them through a 1000-byte buffer). */
export function errorMessage(err: unknown): string {
  const text = errorText(err);
  return Buffer.byteLength(text) <= 900 ? text : Buffer.from(text).subarray(0, 900).toString('utf8');
}
