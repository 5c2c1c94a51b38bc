// One client socket from accept to close: handshake (bounded in time), then a
// TransmissionSession. Every failure here ends this connection only.
import type { Socket } from 'node:net';
import { ByteQueue, ConnectionClosedError } from './byte-queue.ts';
import { ProtocolError } from './errno.ts';
import { negotiate, type HandshakeTls, type Negotiated } from './handshake.ts';
import type { ExportProvider } from './exports.ts';
import { TransmissionSession, type SessionShared } from './session.ts';
import type { NbdTls } from './tls-credentials.ts';
import { TlsHandshakeError, upgradeToTls } from './tls-upgrade.ts';
import type { Logger } from '../log.ts';

/** `limits`, `budget` and `buffers` are shared by every connection of the server. */
export interface ConnectionDeps extends SessionShared {
  exports: ExportProvider;
  logger: Logger;
  /** True once the server is closing (options get ERR_SHUTDOWN). */
  shuttingDown(): boolean;
  /** TLS credentials and mode (--tls on/require); absent: no TLS. */
  tls?: NbdTls;
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

  constructor(socket: Socket, deps: ConnectionDeps, logger: Logger) {
    this.socket = socket;
    this.deps = deps;
    this.logger = logger;
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  /** Name of the export in transmission, undefined during the handshake or after close. */
  get exportName(): string | undefined {
    return this.isClosed ? undefined : this.session?.negotiated.exportName;
  }

  start(): void {
    this.attach(this.socket);
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
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('drain', this.onDrain);
    socket.on('error', (err) => {
      this.logger.debug({ err }, 'socket error');
      socket.destroy();
    });
    socket.on('close', this.onClose);
  }

  private handshakeTls(): HandshakeTls | undefined {
    const { tls } = this.deps;
    return tls && { required: tls.mode === 'require', upgrade: (ack) => this.startTls(ack, tls) };
  }

  /** The one place the socket changes: plaintext to TLS, in the order tls-upgrade.ts explains. */
  private async startTls(ack: Buffer, tls: NbdTls): Promise<void> {
    const plain = this.socket;
    plain.off('data', this.onData).off('end', this.onEnd).off('drain', this.onDrain);
    this.socket = await upgradeToTls(plain, ack, this.queue, tls, this.logger);
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
