// The successor's side of a live restart (see restart.ts for the old daemon's side): say the code
// is loaded, collect the handles the old daemon sends, and on 'go' start the daemon over them.
// Connections are only made into sockets (which starts reading them) once this process is sure
// to serve them, after 'go'; until then the old daemon can still take everything back.
import type { RawHandle } from '../common/accept-gate.ts';
import type { ListenerTransfer } from '../nbd/server.ts';
import type { TransmissionState } from '../nbd/connection.ts';
import type { CarriedTransient } from '../store/transient-store.ts';
import { SUCCESSOR_ENV, type FromSuccessor, type ToSuccessor } from './handover-protocol.ts';

/** What the old daemon handed over. */
export interface Inherited {
  nbdListeners: ListenerTransfer[];
  control: { handle: RawHandle; path: string } | undefined;
  connections: { handle: RawHandle; state: TransmissionState; rest: Buffer }[];
  fresh: { kind: 'nbd' | 'control'; handle: RawHandle }[];
  /** Transient (N) snapshots' state, by name. */
  transients: Map<string, CarriedTransient>;
  /** PO snapshots in Overflow. */
  overflowed: Set<string>;
  /** Where connections handed over after 'go' are delivered (set by the daemon once it serves). */
  onLate(fn: (kind: 'nbd' | 'control', handle: RawHandle) => void): void;
}

/** True when this process was started by a running daemon to take over from it. */
export function isSuccessor(): boolean {
  return process.env[SUCCESSOR_ENV] === '1' && typeof process.send === 'function';
}

function send(msg: FromSuccessor): void {
  if (process.connected) process.send?.(msg);
}

/** Tell the old daemon this one failed (it goes on serving). */
export function reportSuccessorFailure(reason: string): void {
  if (isSuccessor()) send({ type: 'failed', reason });
}

/**
 * Tell the old daemon this one serves, and wait for its 'commit' (it will take nothing back):
 * only then are the connections it paused read here. If the old daemon is gone, nobody else
 * will serve them: go on as well. The channel then keeps nothing alive.
 */
export async function reportReadyAwaitCommit(): Promise<void> {
  const committed = new Promise<void>((resolve) => {
    process.on('message', (msg: ToSuccessor) => msg.type === 'commit' && resolve());
    process.once('disconnect', resolve);
  });
  send({ type: 'ready', pid: process.pid });
  await committed;
  process.channel?.unref();
}

/** Say 'loaded', then collect handles until 'go'. Rejects if the old daemon goes away first. */
export function awaitHandover(): Promise<Inherited> {
  delete process.env[SUCCESSOR_ENV]; // not inherited by anything this process starts
  let late: ((kind: 'nbd' | 'control', handle: RawHandle) => void) | undefined;
  const inherited: Inherited = {
    nbdListeners: [], control: undefined, connections: [], fresh: [], transients: new Map(), overflowed: new Set(),
    onLate(fn) {
      late = fn;
      for (const f of inherited.fresh.splice(0)) fn(f.kind, f.handle);
    },
  };
  return new Promise((resolve, reject) => {
    let going = false;
    process.on('message', (msg: ToSuccessor, handle?: RawHandle) => {
      if (msg.type === 'commit') return;
      if (msg.type === 'overflowed') {
        for (const name of msg.names) inherited.overflowed.add(name);
        return;
      }
      if (msg.type === 'transient') {
        const bytes = Buffer.from(msg.exceptions, 'base64');
        const exceptions = new Float64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8);
        inherited.transients.set(msg.name, { nextFreeSector: msg.nextFreeSector, invalid: msg.invalid, exceptions });
        return;
      }
      if (msg.type === 'go') {
        going = true;
        return resolve(inherited);
      }
      if (!handle) return;
      if (msg.type === 'listener') {
        if (msg.kind === 'control') inherited.control = { handle, path: msg.unixPath ?? '' };
        else inherited.nbdListeners.push({ handle, unixPath: msg.unixPath });
      } else if (msg.type === 'connection') {
        inherited.connections.push({ handle, state: msg.state, rest: Buffer.from(msg.rest, 'base64') });
      } else if (msg.type === 'fresh') {
        if (late) late(msg.kind, handle);
        else inherited.fresh.push({ kind: msg.kind, handle });
      }
    });
    process.once('disconnect', () => {
      if (!going) reject(new Error('the running daemon gave up the restart'));
    });
    send({ type: 'loaded' });
  });
}
