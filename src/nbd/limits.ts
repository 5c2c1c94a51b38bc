// Server limits: what one client may cost in memory and time. All sizes in bytes.

export interface NbdLimits {
  /** Option data above this gets ERR_TOO_BIG (drained) or, above hardOptionLength, a disconnect. */
  maxOptionLength: number;
  /** Option data above this closes the connection without reading it. */
  hardOptionLength: number;
  /** Longest export name or metadata query string (the spec's MUST limit). */
  maxStringLength: number;
  /** Options one connection may send before it is disconnected (LIST adds 2 per export). */
  maxOptions: number;
  /** The whole handshake must finish within this many milliseconds. */
  handshakeTimeoutMs: number;
  /** Largest READ/WRITE payload; advertised as the BLOCK_SIZE maximum. */
  maxPayload: number;
  /** Stop parsing requests while this many payload bytes are in flight on a connection. */
  maxInflightBytes: number;
  /** Server-wide: stop parsing (on connections that have something in flight) above this many bytes held. */
  maxServerInflightBytes: number;
  /** Simultaneous connections; more are closed at accept. */
  maxConnections: number;
  /** Stop parsing requests while this many requests are in flight on a connection. */
  maxInflightRequests: number;
  /** During close(), how long idle connections may still send one option or request. */
  shutdownGraceMs: number;
  /** During close(), connections still busy after this long are dropped (a hung device). */
  shutdownTimeoutMs: number;
}

export const DEFAULT_LIMITS: NbdLimits = {
  maxOptionLength: 64 * 1024,
  hardOptionLength: 1024 * 1024,
  maxStringLength: 4096,
  maxOptions: 32,
  handshakeTimeoutMs: 30_000,
  maxPayload: 32 * 1024 * 1024,
  maxInflightBytes: 64 * 1024 * 1024,
  maxServerInflightBytes: 128 * 1024 * 1024,
  maxConnections: 1024,
  maxInflightRequests: 256,
  shutdownGraceMs: 1000,
  shutdownTimeoutMs: 30_000,
};

/**
 * The limits whose hits are counted for metrics: `connections` (refused at accept),
 * `handshake_timeout`, and the flow limits that stop a connection from reading requests
 * (per connection: `inflight_requests`, `inflight_bytes`, `send_buffer`; server-wide:
 * `server_inflight_bytes`).
 */
export const LIMIT_NAMES = ['connections', 'handshake_timeout', 'inflight_requests', 'inflight_bytes', 'send_buffer', 'server_inflight_bytes'] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

export function resolveLimits(partial: Partial<NbdLimits> = {}): NbdLimits {
  return { ...DEFAULT_LIMITS, ...partial };
}

/** BLOCK_SIZE info: minimum, preferred, maximum. */
export function blockSizes(limits: NbdLimits): [number, number, number] {
  return [1, 4096, limits.maxPayload];
}
