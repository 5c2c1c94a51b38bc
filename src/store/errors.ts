// Errors raised while opening a store. I/O errors during operation are BlockErrors (EIO, ENOSPC);
// these two say that the store cannot be opened at all, and why.

/** The COW device does not hold a usable persistent store: bad magic, version, chunk size, truncated. */
export class CorruptStoreError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CorruptStoreError';
  }
}

/** The arguments are illegal (store kind, chunk size, a COW too small to hold a store). */
export class StoreConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StoreConfigError';
  }
}
