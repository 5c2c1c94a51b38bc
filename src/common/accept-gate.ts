// Accepting connections across a live restart (daemon/restart-*.ts). Listeners are created with
// pauseOnConnect, so an accepted socket has read nothing until its server starts it. While a
// restart is in progress the gate holds new sockets unread; after the handover it forwards them
// to the successor; if the successor fails they are started here after all. Nothing a client sent
// is read by a process that will not answer it.
import type net from 'node:net';

/** libuv's stream handle behind a net.Socket or net.Server (what a child process can be sent). */
export type RawHandle = object;

interface WithHandle {
  _handle?: (RawHandle & { reading?: boolean; readStop?: () => number; readStart?: () => number }) | null;
}

/** The handle of a socket or server, or undefined once it is closed. */
export function rawHandle(s: net.Socket | net.Server): RawHandle | undefined {
  return (s as unknown as WithHandle)._handle ?? undefined;
}

/**
 * Stop reading from `socket` at once (no more bytes leave the kernel's buffer for this process)
 * and hand whatever Node has buffered to the socket's 'data' listeners. Returns its handle.
 * `buffered: false`: the socket buffers nothing (it reads into chosen buffers, nbd/direct-reads.ts,
 * where socket.read() would start reading again).
 */
export function stopReading(socket: net.Socket, buffered = true): RawHandle | undefined {
  const handle = (socket as unknown as WithHandle)._handle;
  if (!handle) return undefined;
  if (handle.reading !== false) {
    handle.reading = false;
    handle.readStop?.();
  }
  if (buffered) while (socket.read() !== null); // emits 'data' for what was buffered
  return handle;
}

/**
 * Undo stopReading(). The stream may believe a read is still pending (it was when the handle
 * stopped), in which case it never asks again: start the handle itself.
 */
export function restartReading(socket: net.Socket): void {
  const handle = (socket as unknown as WithHandle)._handle;
  if (!handle || handle.reading !== false) return;
  handle.reading = true;
  handle.readStart?.();
}

export class AcceptGate {
  private held: net.Socket[] = [];
  private holding = false;
  private forward: ((socket: net.Socket) => void) | undefined;
  private readonly start: (socket: net.Socket) => void;

  /** `start`: what the server does with a connection it serves itself. */
  constructor(start: (socket: net.Socket) => void) {
    this.start = start;
  }

  /** The server's 'connection' listener. */
  readonly onConnection = (socket: net.Socket): void => {
    if (this.forward) return this.forward(socket);
    if (!this.holding) return this.start(socket);
    socket.on('error', () => socket.destroy());
    this.held.push(socket);
  };

  /** Hold new connections unread until release() or forwardTo(). */
  hold(): void {
    this.holding = true;
  }

  /** The connections held so far (the caller now owns them). */
  takeHeld(): net.Socket[] {
    const held = this.held.filter((s) => !s.destroyed);
    this.held = [];
    return held;
  }

  /** Every connection accepted from now on goes to `fn` (the successor, after a handover). */
  forwardTo(fn: (socket: net.Socket) => void): void {
    this.forward = fn;
    for (const socket of this.takeHeld()) fn(socket);
  }

  /** Serve held and new connections here again. */
  release(): void {
    this.holding = false;
    this.forward = undefined;
    for (const socket of this.takeHeld()) this.start(socket);
  }
}
