// The composition root: catalog -> repair -> targets (every origin with all its snapshots) -> NBD
// server -> control socket -> READY. stop() undoes it in reverse: stop accepting control
// requests (waiting for the one in progress), close the NBD server (in-flight requests are
// answered), detach every snapshot (closing its store flushes it), close origins and catalog.
// restart() hands everything to a successor instead (restart.ts); a successor starts over what
// it was handed (successor.ts) instead of binding the sockets itself.
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { BufferPool } from '../block/buffer-pool.ts';
import { Catalog } from '../catalog/catalog.ts';
import { ControlError, type DaemonInfo, type RestartResult } from '../control/api.ts';
import { ControlServer } from '../control/server.ts';
import { clearStaleSocket } from '../common/unix-socket.ts';
import type { Logger } from '../log.ts';
import type { DaemonMetrics } from '../metrics/daemon-metrics.ts';
import { DEFAULT_POOL_BYTES, NbdServer } from '../nbd/server.ts';
import type { DaemonConfig } from './config.ts';
import type { DaemonContext } from './context.ts';
import { createHandlers, createLock } from './handlers.ts';
import { notifyReady, notifyReloading, notifyStopping } from './notify.ts';
import { ExportLifecycle } from './lifecycle.ts';
import { repairCatalog } from './repair.ts';
import { restoreAll } from './restore.ts';
import { makeDirs } from './paths.ts';
import { lockDataDir, type DataDirLock } from './data-dir-lock.ts';
import { metricsSource } from './metrics-source.ts';
import { DEFAULT_RESTART_TIMEOUT_MS, RestartFailed, Successor, type CarriedState } from './restart.ts';
import { adoptConnections, adoptInherited, type Inherited } from './adopt.ts';

export const CATALOG_FILE = 'catalog.db';

/** How long a live restart waits for a connection still negotiating before closing it. */
const HANDSHAKE_WAIT_MS = 2000;

function packageVersion(): string {
  const file = new URL('../../package.json', import.meta.url);
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

/** The --metrics hooks, or null. prom-client is loaded only then: it adds ~0.1 s to a start. */
async function openMetrics(config: DaemonConfig, log: Logger): Promise<DaemonMetrics | null> {
  if (!config.metrics) return null;
  const { DaemonMetrics } = await import('../metrics/daemon-metrics.ts');
  return new DaemonMetrics({ at: config.metrics, dataDir: config.dataDir, log: log.child({ module: 'metrics' }) });
}

/** Lock the data dir and open the catalog (refused before anything in the data dir is touched). */
function openDataDir(config: DaemonConfig): { lock: DataDirLock; catalog: Catalog } {
  const lock = lockDataDir(config.dataDir);
  try {
    return { lock, catalog: new Catalog(path.join(config.dataDir, CATALOG_FILE)) };
  } catch (err) {
    lock.release();
    throw err;
  }
}

export class Daemon {
  readonly info: DaemonInfo;
  /** Resolves when a successor took over: the process should exit (not stop) once control is idle. */
  readonly handedOver: Promise<Successor>;
  private readonly ctx: DaemonContext;
  private readonly nbd: NbdServer;
  private readonly control: ControlServer;
  private lock: DataDirLock;
  private readonly metrics: DaemonMetrics | null;
  private stopping: Promise<void> | undefined;
  private restarting = false;
  /** The restart in progress (a stop waits for it). */
  private restart$: Promise<unknown> | undefined;
  /** Set once a successor took over: nothing is left here to stop. */
  private successor: Successor | undefined;
  private markHandedOver!: (successor: Successor) => void;
  /** After a handover: the TLS connections relayed to the successor. */
  private relay: { relayed: number; ended: Promise<void> } | undefined;
  /** After a handover: this process's copies of the connections accepted but never read. */
  private heldFresh: net.Socket[] = [];

  private constructor(ctx: DaemonContext, nbd: NbdServer, listening: Pick<DaemonInfo, 'tcp' | 'metrics'>, lock: DataDirLock, metrics: DaemonMetrics | null) {
    this.ctx = ctx;
    this.nbd = nbd;
    this.lock = lock;
    this.metrics = metrics;
    const { config } = ctx;
    this.info = { version: packageVersion(), pid: process.pid, dataDir: config.dataDir, controlSocket: config.controlSocket, nbdSocket: config.nbdSocket, ...listening };
    this.handedOver = new Promise((resolve) => (this.markHandedOver = resolve));
    const ops = { info: () => this.info, restart: (wait: boolean, timeoutMs?: number) => this.restart(wait, timeoutMs) };
    this.control = new ControlServer({ handlers: createHandlers(ctx, ops), logger: ctx.log.child({ module: 'control' }) });
  }

  /**
   * Start everything; resolves once every export is served and the control socket listens.
   * `inherited`: a successor's sockets and connections, handed over by the previous daemon.
   */
  static async start(config: DaemonConfig, log: Logger, inherited?: Inherited): Promise<Daemon> {
    makeDirs(config.dataDir, 0o700);
    // One daemon per data dir: refused here, before anything in it is read or changed.
    const { lock, catalog } = openDataDir(config);
    try {
      // Refuse early if another daemon owns these sockets (a successor's are live: they are ours).
      if (!inherited) {
        await clearStaleSocket(config.controlSocket);
        await clearStaleSocket(config.nbdSocket);
      }
    } catch (err) {
      catalog.close();
      lock.release();
      throw err;
    }
    const bufferPool = new BufferPool(DEFAULT_POOL_BYTES); // shared by NBD requests and snapshot copy-outs
    // Metrics hooks exist before the exports: snapshots and connections report to them from the start.
    const metrics = await openMetrics(config, log);
    // Test hook (as NBDSNAP_FAULT): smaller merge batches make a merge slow enough to watch.
    const mergeBatchBytes = Number(process.env.NBDSNAP_MERGE_BATCH_BYTES) || undefined;
    const exports = new ExportLifecycle({ bufferPool, onCopy: metrics?.onCopy, mergeBatchBytes });
    const nbd = new NbdServer({ exports, bufferPool, logger: log.child({ module: 'nbd' }), tls: config.tls, observer: metrics?.nbd });
    exports.bindServer(nbd);
    const ctx: DaemonContext = { config, catalog, exports, log, exclusive: createLock(), transients: inherited?.transients, overflowed: inherited?.overflowed };
    let daemon: Daemon | undefined;
    try {
      repairCatalog(catalog, log);
      await restoreAll(ctx);
      let tcp: DaemonInfo['tcp'];
      if (inherited) {
        tcp = await adoptInherited(inherited, config, nbd);
      } else {
        await nbd.listenUnix(config.nbdSocket);
        tcp = config.listen ? await nbd.listenTcp(config.listen.host, config.listen.port) : null;
      }
      metrics?.collectFrom(metricsSource(exports, nbd));
      const metricsAt = metrics ? await metrics.listen() : null;
      daemon = new Daemon(ctx, nbd, { tcp, metrics: metricsAt }, lock, metrics);
      if (inherited?.control) {
        await daemon.control.adoptListener(inherited.control.handle, config.controlSocket);
      } else {
        await daemon.control.listen(config.controlSocket);
      }
    } catch (err) {
      await (daemon ?? new Daemon(ctx, nbd, { tcp: null, metrics: null }, lock, metrics)).stop(Boolean(inherited));
      throw err;
    }
    const served = exports.list().length;
    const failed = exports.failedCount();
    const { tcp, metrics: metricsAt } = daemon.info;
    log.info({ exports: served, failed, nbdSocket: config.nbdSocket, controlSocket: config.controlSocket, tcp, metrics: metricsAt, restarted: Boolean(inherited) }, 'nbdsnap daemon ready');
    await notifyReady(`serving ${served} exports${failed ? `, ${failed} failed` : ''}`, log);
    return daemon;
  }

  /**
   * Ordered shutdown; safe to call more than once. `keepSockets`: a failed successor leaves the
   * socket files to the daemon it came from. During a live restart it waits for the restart's
   * end; after a handover there is nothing left to stop (the successor serves).
   */
  stop(keepSockets = false): Promise<void> {
    this.stopping ??= (async () => {
      await this.restart$?.catch(() => undefined);
      if (!this.successor) await this.shutdown(keepSockets);
    })();
    return this.stopping;
  }

  /** The successor that took over, if one did. */
  get handedOverTo(): Successor | undefined {
    return this.successor;
  }

  /** Successor side, after 'commit': go on with the connections the previous daemon paused. */
  adopt(inherited: Inherited): void {
    adoptConnections(inherited, this.nbd, this.control);
  }

  /** Resolves when no control request is being answered any more (before exiting after a handover). */
  controlIdle(): Promise<void> {
    return this.control.idle();
  }

  /**
   * After a handover with TLS connections to relay: let go of everything else this process still
   * has (listeners, control connections, its copies of the sockets handed over).
   */
  async keepOnlyRelays(): Promise<void> {
    for (const socket of this.heldFresh.splice(0)) socket.destroy();
    this.nbd.releaseHandedOver();
    await this.control.close(true); // resolves once its listener has no connection left here
  }

  /** Settles once the last relayed TLS connection has ended. */
  relaysEnded(): Promise<void> {
    return this.relay?.ended ?? Promise.resolve();
  }

  /** TLS connections this process relays to its successor (0 unless handed over). */
  get relayed(): number {
    return this.relay?.relayed ?? 0;
  }

  /**
   * Live restart. Refused while another one runs; serialised with every change (a create or a
   * merge step in progress finishes first). `wait`: answer once the successor serves.
   */
  async restart(wait: boolean, timeoutMs = DEFAULT_RESTART_TIMEOUT_MS): Promise<RestartResult> {
    if (this.restarting) throw new ControlError('BUSY', 'a restart is in progress already');
    if (this.stopping) throw new ControlError('SHUTTING_DOWN', 'the daemon is shutting down');
    this.restarting = true;
    const log = this.ctx.log;
    let successor: Successor;
    try {
      log.info('live restart: starting a successor');
      successor = await Successor.start(log, timeoutMs);
    } catch (err) {
      this.restarting = false;
      throw this.failure(err);
    }
    const handover = this.ctx.exclusive(() => this.handOver(successor, timeoutMs)).finally(() => (this.restarting = false));
    this.restart$ = handover;
    if (wait) return handover.catch((err: unknown) => Promise.reject(this.failure(err)));
    handover.catch((err: unknown) => log.error({ err }, 'live restart failed; this daemon goes on serving'));
    return { state: 'started', previousPid: process.pid, pid: successor.pid };
  }

  private failure(err: unknown): unknown {
    if (!(err instanceof RestartFailed)) return err;
    this.ctx.log.error({ reason: err.message }, 'live restart failed; this daemon goes on serving');
    return new ControlError('RESTART_FAILED', `${err.message}; pid ${process.pid} goes on serving`);
  }

  private async handOver(successor: Successor, timeoutMs: number): Promise<RestartResult> {
    const { ctx } = this;
    const started = performance.now();
    await notifyReloading(ctx.log);
    const heldControl = this.control.hold();
    const nbd = await this.nbd.pauseForHandover(HANDSHAKE_WAIT_MS);
    const { closed } = nbd;
    ctx.log.info({ connections: nbd.connections.length, closed }, 'live restart: connections paused, closing stores');
    await this.metrics?.close();
    // Transient snapshots live in memory: their exceptions go to the successor (or come back).
    const carried: CarriedState = { transients: ctx.exports.carryTransients(), overflowed: new Set(ctx.exports.overflowedSnapshots()) };
    let failed: unknown;
    // No flush: the successor opens the same files (a FLUSH there syncs what is pending).
    await ctx.exports.closeAll(ctx.log, { flush: false }).catch((err: unknown) => (failed = err));
    ctx.catalog.close();
    this.lock.release();
    if (failed) return this.takeBack(successor, nbd.fresh, heldControl(), carried, failed);
    const fresh = heldControl();
    try {
      await successor.handOver(nbd, { listener: this.control.listenerHandle, path: ctx.config.controlSocket, fresh }, carried, timeoutMs);
    } catch (err) {
      return this.takeBack(successor, nbd.fresh, fresh, carried, err);
    }
    this.nbd.forwardNewConnections((s) => successor.sendFresh('nbd', s));
    this.control.handOver((s) => successor.sendFresh('control', s));
    this.relay = this.nbd.relayHandedOver();
    const { relayed } = this.relay;
    this.heldFresh = [...nbd.fresh, ...fresh];
    const pauseMs = Math.round(performance.now() - started);
    ctx.log.info({ successor: successor.pid, connections: nbd.connections.length, relayed, pauseMs }, relayed ? 'live restart: the successor serves; relaying its TLS connections' : 'live restart: the successor serves; exiting');
    this.successor = successor;
    this.markHandedOver(successor);
    return { state: 'done', previousPid: process.pid, pid: successor.pid, connections: nbd.connections.length, closed, relayed, pauseMs };
  }

  /** The successor failed after this daemon closed its stores: open everything again and go on. */
  private async takeBack(successor: Successor, nbdFresh: net.Socket[], controlFresh: net.Socket[], carried: CarriedState, err: unknown): Promise<never> {
    const { ctx } = this;
    await successor.kill();
    ctx.log.warn({ err }, 'live restart failed: taking everything back');
    try {
      const { lock, catalog } = openDataDir(ctx.config);
      this.lock = lock;
      ctx.catalog = catalog;
      repairCatalog(catalog, ctx.log);
      ctx.transients = carried.transients;
      ctx.overflowed = carried.overflowed;
      await restoreAll(ctx);
      if (this.metrics) await this.metrics.listen();
    } catch (reopenErr) {
      // Nothing is left to serve from: exit so that a supervisor starts a daemon afresh.
      ctx.log.fatal({ err: reopenErr }, 'cannot reopen the data dir after a failed restart; exiting');
      process.exit(1);
    }
    this.nbd.resumeAfterHandover(nbdFresh);
    this.control.release(controlFresh);
    await notifyReady('serving (restart failed)', ctx.log);
    throw err instanceof RestartFailed ? err : new RestartFailed(`the handover failed: ${err instanceof Error ? err.message : String(err)}`);
  }

  private async shutdown(keepSockets: boolean): Promise<void> {
    const { ctx } = this;
    ctx.log.info('shutting down');
    await notifyStopping(ctx.log);
    await this.metrics?.close();
    await this.control.close(keepSockets);
    await this.nbd.close(keepSockets);
    let failed: unknown;
    // Every snapshot detached (its store flushed and closed), every origin flushed and closed;
    // one export that fails to close does not leave the others (or the catalog) open.
    await ctx.exports.closeAll(ctx.log).catch((err: unknown) => (failed = err));
    ctx.catalog.close();
    if (!keepSockets) fs.rmSync(ctx.config.nbdSocket, { force: true });
    this.lock.release(); // last: a next daemon finds nothing of ours left to race with
    if (failed) throw failed;
    ctx.log.info('stopped');
  }
}
