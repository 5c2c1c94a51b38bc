// One client socket from accept to close: handshake (bounded in time), then a
// TransmissionSession. Every failure here ends this connection only.
import type { Socket } from 'node:net';
import { ByteQueue, ConnectionClosedError } from './byte-queue.ts';
import { ProtocolError } from './errno.ts';
import { negotiate, type Negotiated } from './handshake.ts';
import type { ExportProvider } from './exports.ts';
import { TransmissionSession, type SessionShared } from './session.ts';
import type { Logger } from '../log.ts';

/** `limits`, `budget` and `buffers` are shared by every connection of the server. */
export interface ConnectionDeps extends SessionShared {
  exports: ExportProvider;
  logger: Logger;
  /** True once the server is closing (options get ERR_SHUTDOWN). */
  shuttingDown(): boolean;
}

export class NbdConnection {
  readonly closed: Promise<void>;
  private readonly socket: Socket;
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
    const { socket } = this;
    socket.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      this.session?.pump();
    });
    socket.on('end', () => {
      this.queue.end();
      this.session?.onEnd();
    });
    socket.on('drain', () => this.session?.pump());
    socket.on('error', (err) => {
      this.logger.debug({ err }, 'socket error');
      socket.destroy();
    });
    socket.on('close', () => {
      this.isClosed = true;
      this.queue.end();
      for (const timer of this.timers) clearTimeout(timer);
      this.logger.debug('connection closed');
      this.markClosed();
    });
    this.after(this.deps.limits.handshakeTimeoutMs, () => {
      if (this.session) return;
      this.logger.warn('handshake timed out');
      socket.destroy();
    });
    this.handshake().catch((err: unknown) => this.fail(err));
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
    else this.logger.error({ err }, 'handshake failed');
    this.socket.destroy();
  }

  private after(ms: number, fn: () => void): void {
    const timer = setTimeout(fn, ms);
    timer.unref();
    this.timers.push(timer);
  }
}
