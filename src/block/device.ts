// The block-device contract every layer implements (the equivalent of nbdkit's `next`).
// Offsets and lengths are bytes. Callers validate ranges at the edge; implementations may assert.

export interface DeviceCaps {
  /** flush() makes earlier completed writes durable (false: flush is a no-op). */
  readonly flush: boolean;
  /** write/zero/trim honour {fua: true} by being durable before they resolve. */
  readonly fua: boolean;
  /** trim() is meaningful (a hint; contents afterwards are undefined). */
  readonly trim: boolean;
  /** zero() is offered to clients (WRITE_ZEROES). */
  readonly zero: boolean;
  /** zero() with {fast: true} is cheaper than writing zeroes; otherwise it fails ENOTSUP. */
  readonly fastZero: boolean;
}

export interface WriteOptions {
  /** Force unit access: durable before the promise resolves. */
  fua?: boolean;
  /**
   * The caller has other writes to run alongside this one (the same origin piece to several
   * snapshots): a device that may write synchronously should write this one off the event loop.
   */
  background?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** The range may be deallocated (a hole) as long as it reads back as zeroes. */
  mayTrim?: boolean;
  /** Fail with ENOTSUP instead of doing a slow zeroing write. */
  fast?: boolean;
}

/** One run of the `base:allocation` map: flags bit0 HOLE, bit1 ZERO. */
export interface Extent {
  length: number;
  flags: number;
}

export interface BlockDevice {
  /** Current size in bytes; may grow over the device's life (resize). */
  readonly size: number;
  /** Logical block size in bytes (512 or 4096). */
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly caps: DeviceCaps;
  /** Fill `buf` entirely from `offset`. */
  read(buf: Uint8Array, offset: number): Promise<void>;
  /** Write all of `buf` at `offset`. The caller may reuse `buf` once this resolves: never keep it. */
  write(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void>;
  /** Make every write that has completed durable. */
  flush(): Promise<void>;
  /** Discard hint for [offset, offset+length). */
  trim(length: number, offset: number, opts?: WriteOptions): Promise<void>;
  /** Make [offset, offset+length) read as zeroes. */
  zero(length: number, offset: number, opts?: ZeroOptions): Promise<void>;
  /** Allocation map from offset (optional; absent means "all data"). May cover less than length. */
  extents?(length: number, offset: number): Promise<Extent[]>;
  /** Release resources; further calls are errors. */
  close(): Promise<void>;
}

export const NO_CAPS: DeviceCaps = { flush: false, fua: false, trim: false, zero: false, fastZero: false };
