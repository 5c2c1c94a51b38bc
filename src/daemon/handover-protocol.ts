// The messages of a live restart between the running daemon (restart.ts) and its successor
// (successor.ts), over the IPC channel Node opens to a child. Handles travel with the messages
// that name them; Node delivers messages in order, so 'go' arrives after every handle.
import type { TransmissionState } from '../nbd/connection.ts';

/** Environment variable that makes `nbdsnap daemon` a successor (set by restart.ts only). */
export const SUCCESSOR_ENV = 'NBDSNAP_SUCCESSOR';

export type ToSuccessor =
  /** A listening socket (with a handle): the NBD Unix socket, NBD TCP, or the control socket. */
  | { type: 'listener'; kind: 'nbd' | 'control'; unixPath?: string }
  /** An NBD connection paused at a request boundary (with a handle); rest: unparsed bytes, base64. */
  | { type: 'connection'; state: TransmissionState; rest: string }
  /** A transient (N) snapshot's in-memory state; exceptions: Float64 (old, new) pairs, base64. */
  | { type: 'transient'; name: string; nextFreeSector: number; invalid: boolean; exceptions: string }
  /** PO snapshots in Overflow (kept in memory only): the successor puts them back in it. */
  | { type: 'overflowed'; names: string[] }
  /** A connection accepted but never read (with a handle). */
  | { type: 'fresh'; kind: 'nbd' | 'control' }
  /** Everything is handed over and the data dir is free: open it and serve. */
  | { type: 'go' }
  /** After 'ready': the old daemon will not take anything back; go on with the connections. */
  | { type: 'commit' };

export type FromSuccessor =
  /** The successor's code is loaded and its config valid: the old daemon may pause. */
  | { type: 'loaded' }
  /** Serving (listeners taken over); the paused connections wait for 'commit'. */
  | { type: 'ready'; pid: number }
  | { type: 'failed'; reason: string };
