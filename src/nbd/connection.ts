// One client socket from accept to close: handshake (bounded in time), then a
// TransmissionSession. Every failure here ends this connection only.
import type { Socket } from 'node:net';
import { rawHandle, restartReading, stopReading, type RawHandle } from '../common/accept-gate.ts';
import { socketPair, type SocketPair } from '../common/socket-pair.ts';
import { ByteQueue, ConnectionClosedError } from './byte-queue.ts';
import { enableDirectReads, type DirectReadSink } from './direct-reads.ts';
import { ProtocolError } from './errno.ts';
import { negotiate, type HandshakeTls, type Negotiated } from './handshake.ts';
import type { ExportProvider } from './exports.ts';
import { TransmissionSession, type SessionShared } from './session.ts';
import type { NbdTls } from './tls-credentials.ts';
import { TlsHandshakeError, upgradeToTls } from './tls-upgrade.ts';
import type { Logger } from '../log.ts';
import type { MetaContext } from './meta-contexts.ts';

/** `limits`, `budget` and `buffers` are shared by every connection of the server. */
export interface ConnectionDeps extends SessionShared {
  exports: ExportProvider;
  logger: Logger;
  /** True once the server is closing (options get ERR_SHUTDOWN). */
  shuttingDown(): boolean;
  /** TLS credentials and mode (--tls on/require); absent: no TLS. */
  tls?: NbdTls;
}

/** What a successor needs to go on with a connection in transmission (a live restart). */
export interface TransmissionState {
  exportName: string;
  /** As negotiated: the client checks its requests against these. */
  size: number;
  flags: number;
  structured: boolean;
  metaContexts: MetaContext[];
}

/** A connection paused at a request boundary: its socket, its state, and the bytes not parsed yet. */
export interface ConnectionTransfer {
  handle: RawHandle;
  state: TransmissionState;
  rest: Buffer;
}

export class NbdConnection {
  readonly closed: Promise<void>;
  /** The accepted socket, replaced by the TLS socket after STARTTLS. */
  private socket: Socket;
  private readonly deps: ConnectionDeps;
  private readonly logger: Logger;
  private readonly queue = new ByteQueue();
  private session: TransmissionSession | undefined;
  private isClosed = false;
  private markClosed!: () => void;
  private timers: NodeJS.Timeout[] = [];
  /** STARTTLS succeeded: the TLS state lives in this process and cannot be handed over. */
  private tls = false;
  /** The plaintext socket reads into buffers chosen here (direct-reads.ts). */
  private direct = false;
  /** A TLS connection handed over: the successor has `far`, this process relays through `near`. */
  private proxy: SocketPair | undefined;
  /** The handed-over TLS connection is being relayed (relayToSuccessor). */
  private relaying = false;
  /** Resolves when the handshake ends (transmission or close). */
  private readonly negotiated: Promise<void>;
  private markNegotiated!: () => void;

  constructor(socket: Socket, deps: ConnectionDeps, logger: Logger) {
    this.socket = socket;
    this.deps = deps;
    this.logger = logger;
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
    this.negotiated = new Promise((resolve) => (this.markNegotiated = resolve));
    void this.closed.then(this.markNegotiated);
  }

  /** Name of the export in transmission, undefined during the handshake or after close. */
  get exportName(): string | undefined {
    return this.isClosed ? undefined : this.session?.negotiated.exportName;
  }

  start(): void {
    this.attach(this.socket);
    this.socket.resume(); // accepted paused (AcceptGate)
    this.after(this.deps.limits.handshakeTimeoutMs, () => {
      if (this.session) return;
      this.logger.warn('handshake timed out');
      this.deps.observer?.limitHit('handshake_timeout');
      this.socket.destroy();
    });
    this.handshake().catch((err: unknown) => this.fail(err));
  }

  private readonly onData = (chunk: Buffer): void => {
    this.queue.push(chunk);
    this.session?.pump();
  };

  /** Bytes read in direct mode: payload bytes go to the session, the rest to the queue as 'data' would. */
  private readonly directSink: DirectReadSink = {
    payloadTarget: () => this.session?.payloadTarget(),
    payloadReceived: (n) => this.session?.payloadReceived(n),
    received: this.onData,
  };

  private readonly onEnd = (): void => {
    this.queue.end();
    this.session?.onEnd();
  };

  private readonly onDrain = (): void => this.session?.pump();

  private readonly onClose = (): void => {
    if (this.isClosed) return; // after STARTTLS both the TLS socket and the plaintext one report it
    this.isClosed = true;
    this.queue.end();
    for (const timer of this.timers) clearTimeout(timer);
    this.logger.debug('connection closed');
    this.markClosed();
  };

  /** Route a socket's events here: the accepted socket, then the TLS socket after STARTTLS. */
  private attach(socket: Socket): void {
    this.attachFlow(socket);
    socket.on('error', (err) => {
      this.logger.debug({ err }, 'socket error');
      socket.destroy();
    });
    socket.on('close', this.onClose);
  }

  /** The events that feed the session (see detachFlow). */
  private attachFlow(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('drain', this.onDrain);
  }

  private detachFlow(socket: Socket): void {
    socket.off('data', this.onData).off('end', this.onEnd).off('drain', this.onDrain);
  }

  private handshakeTls(): HandshakeTls | undefined {
    const { tls } = this.deps;
    return tls && { required: tls.mode === 'require', upgrade: (ack) => this.startTls(ack, tls) };
  }

  /** The one place the socket changes: plaintext to TLS, in the order tls-upgrade.ts explains. */
  private async startTls(ack: Buffer, tls: NbdTls): Promise<void> {
    const plain = this.socket;
    this.detachFlow(plain);
    this.socket = await upgradeToTls(plain, ack, this.queue, tls, this.logger);
    this.tls = true;
    this.attach(this.socket);
  }

  /** Finish in-flight requests and close; a connection still negotiating gets a short grace. */
  shutdown(): void {
    if (this.isClosed) return;
    const { shutdownGraceMs, shutdownTimeoutMs } = this.deps.limits;
    this.after(this.session ? shutdownTimeoutMs : shutdownGraceMs, () => {
      if (this.session) this.logger.warn('requests still in flight at the shutdown deadline, dropping connection');
      this.socket.destroy();
    });
    this.session?.shutdown();
  }

  /**
   * Live restart: pause at a request boundary with every reply flushed and stop reading, so the
   * successor can go on from the bytes not parsed yet. A connection still negotiating gets
   * `handshakeWaitMs` to finish; one that does not is closed. One using TLS, whose session keys
   * cannot leave this process, is handed over through a relay (handOverThroughRelay). Null: not
   * handed over.
   */
  async pauseForHandover(handshakeWaitMs: number): Promise<ConnectionTransfer | null> {
    if (!this.session) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.negotiated, new Promise<void>((resolve) => (timer = setTimeout(resolve, handshakeWaitMs)))]);
      clearTimeout(timer);
    }
    const session = this.session;
    if (this.isClosed) return null;
    if (!session) {
      this.logger.warn('still negotiating at a live restart: closing it (the client may connect again)');
      this.socket.destroy();
      return null;
    }
    const how = await session.pauseForHandover();
    if (how === 'ending' || this.isClosed) return (await this.closed, null);
    if (this.tls) return this.handOverThroughRelay(session);
    const handle = stopReading(this.socket, !this.direct);
    if (!handle || this.isClosed || this.queue.ended) {
      session.resumeAfterHandover();
      return null;
    }
    return { handle, state: transmissionState(session), rest: this.queue.take(this.queue.length) };
  }

  /**
   * A TLS connection paused for a handover: the successor gets one end of a socket pair as the
   * connection, and once it serves, this process relays between the TLS socket and the other end
   * (relayToSuccessor) until the connection ends. Until then the TLS socket is paused and feeds
   * nothing to the session: what the client sends meanwhile waits in it for the relay.
   */
  private async handOverThroughRelay(session: TransmissionSession): Promise<ConnectionTransfer | null> {
    const tlsSocket = this.socket;
    this.detachFlow(tlsSocket);
    tlsSocket.pause();
    let pair: SocketPair;
    try {
      pair = await socketPair();
    } catch (err) {
      this.logger.warn({ err }, 'TLS connection at a live restart: no socket pair for its relay, closing it after its requests');
      this.attachFlow(tlsSocket);
      session.shutdown();
      tlsSocket.resume();
      return (await this.closed, null);
    }
    const handle = rawHandle(pair.far);
    if (this.isClosed || !handle) {
      pair.near.destroy();
      pair.far.destroy();
      return null;
    }
    this.proxy = pair;
    return { handle, state: transmissionState(session), rest: this.queue.take(this.queue.length) };
  }

  /**
   * The successor serves: relay this TLS connection to it (plaintext over the socket pair) until
   * either side ends it. Resolves when the connection is closed; undefined if it is not relayed.
   */
  relayToSuccessor(): Promise<void> | undefined {
    const proxy = this.proxy;
    this.proxy = undefined;
    if (!proxy) return undefined;
    if (this.isClosed) {
      // The client left during the handover: the successor's end sees EOF and closes.
      proxy.near.destroy();
      proxy.far.destroy();
      return undefined;
    }
    this.relaying = true;
    proxy.far.destroy(); // this process's copy; the successor has its own
    const { near } = proxy;
    const tlsSocket = this.socket;
    near.on('error', (err) => {
      this.logger.debug({ err }, 'relay to the successor failed');
      tlsSocket.destroy();
    });
    // The successor closed its side (as at the end of any connection): finish ours the same way.
    near.on('end', () => tlsSocket.end(() => tlsSocket.destroy()));
    tlsSocket.on('close', () => near.destroy());
    tlsSocket.pipe(near); // the client's EOF reaches the successor as EOF
    near.pipe(tlsSocket, { end: false });
    this.logger.info('TLS connection relayed to the successor');
    return this.closed;
  }

  /** After a handover, in a process that stays to relay TLS: let go of this copy of the socket. */
  release(): void {
    if (!this.relaying && !this.isClosed) this.socket.destroy();
  }

  /**
   * The successor did not take over: go on here, with the bytes taken for it put back, on the
   * export as it is now (the daemon opened its exports again: the old device objects are closed).
   */
  resumeAfterHandover(transfer: ConnectionTransfer | null): void {
    const proxy = this.proxy;
    this.proxy = undefined;
    proxy?.near.destroy();
    proxy?.far.destroy();
    if (this.isClosed || !this.session) return;
    if (!transfer) return this.session.resumeAfterHandover();
    if (proxy) this.attachFlow(this.socket); // TLS: the socket was paused and detached, not stopped
    this.continueWith(transfer.state, transfer.rest);
    if (!proxy) restartReading(this.socket);
  }

  /** Successor side: go on with a connection a previous daemon paused (pauseForHandover). */
  adopt(state: TransmissionState, rest: Buffer): void {
    this.attach(this.socket);
    this.continueWith(state, rest);
  }

  private continueWith(state: TransmissionState, rest: Buffer): void {
    this.session?.retire();
    if (rest.length > 0) this.queue.push(rest);
    const exp = this.deps.exports.get(state.exportName);
    if (!exp) {
      this.logger.warn({ export: state.exportName }, 'adopted connection to an export that is no longer served: closing it');
      this.socket.destroy();
      return;
    }
    this.enterTransmission({ ...state, export: exp });
    this.socket.resume();
  }

  private async handshake(): Promise<void> {
    const negotiated = await negotiate({
      queue: this.queue,
      send: (buf) => this.socket.write(buf),
      exports: this.deps.exports,
      limits: this.deps.limits,
      logger: this.logger,
      shuttingDown: this.deps.shuttingDown,
      tls: this.handshakeTls(),
    });
    if (negotiated) this.enterTransmission(negotiated);
    else this.socket.end(() => this.socket.destroy());
  }

  private enterTransmission(negotiated: Negotiated): void {
    const log = this.logger.child({ export: negotiated.exportName });
    log.debug({ size: negotiated.size, flags: negotiated.flags, structured: negotiated.structured }, 'transmission');
    const session = new TransmissionSession(this.socket, this.queue, negotiated, this.deps, log);
    this.session = session;
    if (!this.tls && !this.direct) this.direct = enableDirectReads(this.socket, this.directSink);
    this.markNegotiated();
    session.pump();
    if (this.queue.ended) session.onEnd();
    if (this.deps.shuttingDown()) session.shutdown();
  }

  private fail(err: unknown): void {
    if (err instanceof ProtocolError) this.logger.warn(`closing connection: ${err.message}`);
    else if (err instanceof ConnectionClosedError) this.logger.debug('client left during the handshake');
    else if (err instanceof TlsHandshakeError) this.logger.warn(err.message);
    else this.logger.error({ err }, 'handshake failed');
    this.socket.destroy();
  }

  private after(ms: number, fn: () => void): void {
    const timer = setTimeout(fn, ms);
    timer.unref();
    this.timers.push(timer);
  }
}

function transmissionState(session: TransmissionSession): TransmissionState {
  const { exportName, size, flags, structured, metaContexts } = session.negotiated;
  return { exportName, size, flags, structured, metaContexts: [...metaContexts] };
}
