// The composition root: catalog -> repair -> targets (every origin with all its snapshots) -> NBD
// server -> control socket -> READY. stop() undoes it in reverse: stop accepting control
// requests (waiting for the one in progress), close the NBD server (in-flight requests are
// answered), detach every snapshot (closing its store flushes it), close origins and catalog.
import fs from 'node:fs';
import path from 'node:path';
import { BufferPool } from '../block/buffer-pool.ts';
import { Catalog } from '../catalog/catalog.ts';
import type { DaemonInfo } from '../control/api.ts';
import { ControlServer } from '../control/server.ts';
import { clearStaleSocket } from '../common/unix-socket.ts';
import type { Logger } from '../log.ts';
import type { DaemonMetrics } from '../metrics/daemon-metrics.ts';
import { DEFAULT_POOL_BYTES, NbdServer } from '../nbd/server.ts';
import type { DaemonConfig } from './config.ts';
import type { DaemonContext } from './context.ts';
import { createHandlers, createLock } from './handlers.ts';
import { notifyReady, notifyStopping } from './notify.ts';
import { ExportLifecycle } from './lifecycle.ts';
import { repairCatalog } from './repair.ts';
import { restoreAll } from './restore.ts';
import { makeDirs } from './paths.ts';
import { lockDataDir, type DataDirLock } from './data-dir-lock.ts';
import { metricsSource } from './metrics-source.ts';

export const CATALOG_FILE = 'catalog.db';

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

export class Daemon {
  readonly info: DaemonInfo;
  private readonly ctx: DaemonContext;
  private readonly nbd: NbdServer;
  private readonly control: ControlServer;
  private readonly lock: DataDirLock;
  private readonly metrics: DaemonMetrics | null;
  private stopping: Promise<void> | undefined;

  private constructor(ctx: DaemonContext, nbd: NbdServer, listening: Pick<DaemonInfo, 'tcp' | 'metrics'>, lock: DataDirLock, metrics: DaemonMetrics | null) {
    this.ctx = ctx;
    this.nbd = nbd;
    this.lock = lock;
    this.metrics = metrics;
    const { config } = ctx;
    this.info = { version: packageVersion(), pid: process.pid, dataDir: config.dataDir, controlSocket: config.controlSocket, nbdSocket: config.nbdSocket, ...listening };
    this.control = new ControlServer({ handlers: createHandlers(ctx, () => this.info), logger: ctx.log.child({ module: 'control' }) });
  }

  /** Start everything; resolves once every export is served and the control socket listens. */
  static async start(config: DaemonConfig, log: Logger): Promise<Daemon> {
    makeDirs(config.dataDir, 0o700);
    // One daemon per data dir: refused here, before anything in it is read or changed.
    const lock = lockDataDir(config.dataDir);
    let catalog: Catalog;
    try {
      // Refuse early, before touching the catalog, if another daemon owns these sockets.
      await clearStaleSocket(config.controlSocket);
      await clearStaleSocket(config.nbdSocket);
      catalog = new Catalog(path.join(config.dataDir, CATALOG_FILE));
    } catch (err) {
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
    const ctx: DaemonContext = { config, catalog, exports, log, exclusive: createLock() };
    let daemon: Daemon | undefined;
    try {
      repairCatalog(catalog, log);
      await restoreAll(ctx);
      await nbd.listenUnix(config.nbdSocket);
      const tcp = config.listen ? await nbd.listenTcp(config.listen.host, config.listen.port) : null;
      metrics?.collectFrom(metricsSource(exports, nbd));
      const metricsAt = metrics ? await metrics.listen() : null;
      daemon = new Daemon(ctx, nbd, { tcp, metrics: metricsAt }, lock, metrics);
      await daemon.control.listen(config.controlSocket);
    } catch (err) {
      await (daemon ?? new Daemon(ctx, nbd, { tcp: null, metrics: null }, lock, metrics)).stop();
      throw err;
    }
    const served = exports.list().length;
    const failed = exports.failedCount();
    const { tcp, metrics: metricsAt } = daemon.info;
    log.info({ exports: served, failed, nbdSocket: config.nbdSocket, controlSocket: config.controlSocket, tcp, metrics: metricsAt }, 'nbdsnap daemon ready');
    await notifyReady(`serving ${served} exports${failed ? `, ${failed} failed` : ''}`, log);
    return daemon;
  }

  /** Ordered shutdown; safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const { ctx } = this;
    ctx.log.info('shutting down');
    await notifyStopping(ctx.log);
    await this.metrics?.close();
    await this.control.close();
    await this.nbd.close();
    let failed: unknown;
    // Every snapshot detached (its store flushed and closed), every origin flushed and closed;
    // one export that fails to close does not leave the others (or the catalog) open.
    await ctx.exports.closeAll(ctx.log).catch((err: unknown) => (failed = err));
    ctx.catalog.close();
    fs.rmSync(ctx.config.nbdSocket, { force: true });
    this.lock.release(); // last: a next daemon finds nothing of ours left to race with
    if (failed) throw failed;
    ctx.log.info('stopped');
  }
}
