// The NBD server: listens on Unix sockets (0600, stale socket replaced) and optionally TCP
// (TCP_NODELAY), and runs one NbdConnection per accepted socket. close() stops accepting,
// lets connections finish what is in flight, and removes the socket files. For a live restart,
// pauseForHandover() gives the listeners and every connection (paused at a request boundary) to
// a successor, which adopts them; resumeAfterHandover() goes on if the successor failed.
import fs from 'node:fs';
import net from 'node:net';
import { AcceptGate, rawHandle, type RawHandle } from '../common/accept-gate.ts';
import { BufferPool } from '../block/buffer-pool.ts';
import { clearStaleSocket, listenPrivate } from '../common/unix-socket.ts';
import { NbdConnection, type ConnectionDeps, type ConnectionTransfer, type TransmissionState } from './connection.ts';
import type { ExportProvider } from './exports.ts';
import { InflightBudget } from './inflight-budget.ts';
import { resolveLimits, type NbdLimits } from './limits.ts';
import type { NbdObserver } from './session.ts';
import { logTls, type NbdTls } from './tls-credentials.ts';
import { silentLogger, type Logger } from '../log.ts';

export interface NbdServerOptions {
  exports: ExportProvider;
  logger?: Logger;
  limits?: Partial<NbdLimits>;
  /** Buffers for READ replies and WRITE payloads, shared by every connection; default: a new pool. */
  bufferPool?: BufferPool;
  /** TLS for every listener (tls-credentials.ts loadTls); default: none, STARTTLS is refused. */
  tls?: NbdTls;
  /** Metrics hooks (requests per export, limits hit); default: none. */
  observer?: NbdObserver;
}

/** A listener given to a successor: its handle, and the socket path a Unix one was bound to. */
export interface ListenerTransfer {
  handle: RawHandle;
  unixPath?: string;
}

/** Everything a successor takes over: listeners, paused connections, and connections not started yet. */
export interface NbdHandover {
  listeners: ListenerTransfer[];
  connections: ConnectionTransfer[];
  fresh: net.Socket[];
  /** Connections open when the pause began that are not handed over (TLS, negotiating, ending). */
  closed: number;
}

/** Idle buffers a server's own pool keeps for reuse. */
export const DEFAULT_POOL_BYTES = 128 * 1024 * 1024;

export class NbdServer {
  private readonly exports: ExportProvider;
  private readonly logger: Logger;
  private readonly limits: NbdLimits;
  private readonly listeners: { server: net.Server; unixPath?: string }[] = [];
  private readonly connections = new Set<NbdConnection>();
  private readonly budget: InflightBudget;
  private readonly buffers: BufferPool;
  private readonly tls: NbdTls | undefined;
  private readonly observer: NbdObserver | undefined;
  private closing = false;
  private nextId = 1;
  private readonly gate = new AcceptGate((socket) => this.accept(socket));
  /** The connections paused by pauseForHandover, with what they handed over. */
  private paused = new Map<NbdConnection, ConnectionTransfer | null>();

  constructor(opts: NbdServerOptions) {
    this.exports = opts.exports;
    this.logger = opts.logger ?? silentLogger();
    this.limits = resolveLimits(opts.limits);
    this.budget = new InflightBudget(this.limits.maxServerInflightBytes);
    this.buffers = opts.bufferPool ?? new BufferPool(DEFAULT_POOL_BYTES);
    this.tls = opts.tls;
    if (this.tls) logTls(this.tls, this.logger);
    this.observer = opts.observer;
  }

  /** Bytes held for clients right now, server-wide: request payloads in progress and unflushed replies. */
  get inflightBytes(): number {
    return this.budget.usedBytes;
  }

  /** Listen on a Unix socket created with mode 0600; a stale socket is replaced, a live one or another file is SocketInUseError. */
  async listenUnix(path: string): Promise<void> {
    await clearStaleSocket(path);
    const server = this.createServer();
    await listenPrivate(server, path);
    this.listeners.push({ server, unixPath: path });
    this.logger.info({ socket: path }, 'listening on unix socket');
  }

  /** Listen on TCP; port 0 picks a free port. Resolves with the bound address. */
  async listenTcp(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = this.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => (server.off('error', reject), resolve()));
    });
    this.listeners.push({ server });
    const addr = server.address() as net.AddressInfo;
    this.logger.info({ host: addr.address, port: addr.port }, 'listening on tcp');
    return { host: addr.address, port: addr.port };
  }

  /** Successor side: listen on a listener handle a previous daemon gave us. */
  async adoptListener(t: ListenerTransfer): Promise<void> {
    const server = this.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(t.handle, () => (server.off('error', reject), resolve()));
    });
    this.listeners.push({ server, unixPath: t.unixPath });
    this.logger.info({ socket: t.unixPath, tcp: t.unixPath ? undefined : server.address() }, 'listening on a socket taken over from the previous daemon');
  }

  /** Successor side: go on with a connection the previous daemon paused. */
  adoptConnection(handle: RawHandle, state: TransmissionState, rest: Buffer): void {
    const conn = this.track(this.socketFor(handle));
    conn?.adopt(state, rest);
  }

  /** Successor side: serve a connection the previous daemon accepted but never read. */
  adoptFresh(handle: RawHandle): void {
    this.track(this.socketFor(handle))?.start();
  }

  /**
   * Live restart, old side: hold new connections unread, and pause every connection at a request
   * boundary with its replies flushed (see NbdConnection.pauseForHandover).
   */
  async pauseForHandover(handshakeWaitMs: number): Promise<NbdHandover> {
    this.gate.hold();
    const conns = [...this.connections];
    const transfers = await Promise.all(conns.map((c) => c.pauseForHandover(handshakeWaitMs)));
    this.paused = new Map(conns.map((c, i) => [c, transfers[i]]));
    const listeners = this.listeners.flatMap(({ server, unixPath }) => {
      const handle = rawHandle(server);
      return handle ? [{ handle, unixPath }] : [];
    });
    const connections = transfers.filter((t) => t !== null);
    return { listeners, connections, fresh: this.gate.takeHeld(), closed: transfers.length - connections.length };
  }

  /** The address of the TCP listener, if there is one. */
  tcpAddress(): { host: string; port: number } | null {
    for (const { server, unixPath } of this.listeners) {
      const addr = server.address();
      if (!unixPath && addr && typeof addr === 'object') return { host: addr.address, port: addr.port };
    }
    return null;
  }

  /** After a handover: connections accepted from now on go to `fn` (the successor). */
  forwardNewConnections(fn: (socket: net.Socket) => void): void {
    this.gate.forwardTo(fn);
  }

  /** The successor failed: serve everything here again (`fresh`: the held connections not forwarded). */
  resumeAfterHandover(fresh: net.Socket[]): void {
    for (const [conn, transfer] of this.paused) conn.resumeAfterHandover(transfer);
    this.paused.clear();
    for (const socket of fresh) this.accept(socket);
    this.gate.release();
  }

  /**
   * After a handover: relay the TLS connections handed over to the successor
   * (NbdConnection.relayToSuccessor). `ended` settles once every one of them has closed.
   */
  relayHandedOver(): { relayed: number; ended: Promise<void> } {
    const relays = [...this.paused.keys()].flatMap((conn) => conn.relayToSuccessor() ?? []);
    return { relayed: relays.length, ended: Promise.all(relays).then(() => undefined) };
  }

  /**
   * After a handover, in a process that stays to relay TLS connections: close this process's
   * copies of the listeners (the socket files stay, see listenPrivate) and of the connections the
   * successor now serves, so that a connection it closes is closed for its client too.
   */
  releaseHandedOver(): void {
    for (const { server } of this.listeners) server.close();
    this.listeners.length = 0;
    for (const conn of this.paused.keys()) conn.release();
  }

  /** Live transmission-phase connections to the export negotiated under `exportName`. */
  connectionCount(exportName: string): number {
    let count = 0;
    for (const conn of this.connections) if (conn.exportName === exportName) count++;
    return count;
  }

  /** Finish in-flight requests on, then close, every connection to `exportName` (but those paused for a handover). */
  async disconnectExport(exportName: string): Promise<void> {
    const matching = [...this.connections].filter((conn) => conn.exportName === exportName && !this.paused.has(conn));
    for (const conn of matching) conn.shutdown();
    await Promise.all(matching.map((conn) => conn.closed));
  }

  /**
   * Stop accepting, refuse new options with ERR_SHUTDOWN, answer in-flight requests, close all.
   * `keepSocketFiles`: leave the socket files (a failed successor's belong to the daemon it came from).
   */
  async close(keepSocketFiles = false): Promise<void> {
    this.closing = true;
    const stopped = this.listeners.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())));
    if (!keepSocketFiles) for (const { unixPath } of this.listeners) if (unixPath) fs.rmSync(unixPath, { force: true });
    for (const conn of this.connections) conn.shutdown();
    await Promise.all([...stopped, ...[...this.connections].map((conn) => conn.closed)]);
    this.listeners.length = 0;
  }

  private createServer(): net.Server {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: 1 << 20, pauseOnConnect: true });
    server.on('connection', this.gate.onConnection);
    server.once('listening', () => server.on('error', (err) => this.logger.error({ err }, 'listener error')));
    return server;
  }

  private accept(socket: net.Socket): void {
    this.track(socket)?.start();
  }

  /** A socket made from a handed-over handle, set up as an accepted one. */
  private socketFor(handle: RawHandle): net.Socket {
    const socket = new net.Socket({ handle, readable: true, writable: true, allowHalfOpen: true, highWaterMark: 1 << 20 } as net.SocketConstructorOpts);
    socket.pause();
    if (socket.remoteAddress) socket.setNoDelay(true); // TCP
    return socket;
  }

  /** A connection for `socket`, counted and forgotten when closed; undefined if refused. */
  private track(socket: net.Socket): NbdConnection | undefined {
    const id = this.nextId++;
    const logger = this.logger.child({ conn: id });
    if (this.closing) return void socket.destroy();
    if (this.connections.size >= this.limits.maxConnections) {
      logger.warn(`refusing connection: ${this.connections.size} connections already open`);
      this.observer?.limitHit('connections');
      return void socket.destroy();
    }
    const deps: ConnectionDeps = {
      exports: this.exports, limits: this.limits, budget: this.budget, buffers: this.buffers, logger, shuttingDown: () => this.closing,
      tls: this.tls,
      observer: this.observer,
    };
    const conn = new NbdConnection(socket, deps, logger);
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
    logger.debug({ remote: socket.remoteAddress ?? 'unix' }, 'connection accepted');
    return conn;
  }
}
