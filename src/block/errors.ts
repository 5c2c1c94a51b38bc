// Errors that cross layer boundaries carry an errno name from this table; the NBD layer maps
// them to wire values in one place (nbd/errno.ts). Values are the NBD wire numbers, which equal
// Linux's for this subset.
export const Errno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type ErrnoName = keyof typeof Errno;

/** An I/O error with a definite errno, raised by devices, stores and targets. */
export class BlockError extends Error {
  readonly errno: ErrnoName;
  constructor(errno: ErrnoName, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BlockError';
    this.errno = errno;
  }
}

export function isBlockError(err: unknown): err is BlockError {
  return err instanceof BlockError;
}
