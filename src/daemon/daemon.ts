// The composition root: catalog -> repair -> targets (every origin with all its snapshots) -> NBD
// server -> control socket -> READY. stop() undoes it in reverse: stop accepting control
// requests (waiting for the one in progress), close the NBD server (in-flight requests are
// answered), detach every snapshot (closing its store flushes it), close origins and catalog.
import fs from 'node:fs';
import path from 'node:path';
import { Catalog } from '../catalog/catalog.ts';
import type { DaemonInfo } from '../control/api.ts';
import { ControlServer } from '../control/server.ts';
import { clearStaleSocket } from '../control/unix-socket.ts';
import type { Logger } from '../log.ts';
import { NbdServer } from '../nbd/server.ts';
import type { DaemonConfig } from './config.ts';
import type { DaemonContext } from './context.ts';
import { createHandlers } from './handlers.ts';
import { notifyReady, notifyStopping } from './notify.ts';
import { Registry } from './registry.ts';
import { repairCatalog } from './repair.ts';
import { restoreAll } from './restore.ts';
import { makeDirs } from './paths.ts';

export const CATALOG_FILE = 'catalog.db';

function packageVersion(): string {
  const file = new URL('../../package.json', import.meta.url);
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

export class Daemon {
  readonly info: DaemonInfo;
  private readonly ctx: DaemonContext;
  private readonly control: ControlServer;
  private stopping: Promise<void> | undefined;

  private constructor(ctx: DaemonContext, tcp: DaemonInfo['tcp']) {
    this.ctx = ctx;
    const { config } = ctx;
    this.info = { version: packageVersion(), pid: process.pid, dataDir: config.dataDir, controlSocket: config.controlSocket, nbdSocket: config.nbdSocket, tcp };
    this.control = new ControlServer({ handlers: createHandlers(ctx, () => this.info), logger: ctx.log.child({ module: 'control' }) });
  }

  /** Start everything; resolves once every export is served and the control socket listens. */
  static async start(config: DaemonConfig, log: Logger): Promise<Daemon> {
    makeDirs(config.dataDir, 0o700);
    // Refuse early, before touching the catalog, if another daemon owns these sockets.
    await clearStaleSocket(config.controlSocket);
    await clearStaleSocket(config.nbdSocket);
    const catalog = new Catalog(path.join(config.dataDir, CATALOG_FILE));
    const registry = new Registry();
    const nbd = new NbdServer({ exports: registry, logger: log.child({ module: 'nbd' }) });
    const ctx: DaemonContext = { config, catalog, registry, nbd, log };
    let daemon: Daemon | undefined;
    try {
      repairCatalog(catalog, log);
      await restoreAll(catalog, registry, log);
      await nbd.listenUnix(config.nbdSocket);
      const tcp = config.listen ? await nbd.listenTcp(config.listen.host, config.listen.port) : null;
      daemon = new Daemon(ctx, tcp);
      await daemon.control.listen(config.controlSocket);
    } catch (err) {
      await (daemon ?? new Daemon(ctx, null)).stop();
      throw err;
    }
    const served = registry.list().length;
    const failed = registry.snapshots().filter((s) => !s.snapshot.target).length + [...registry.origins.values()].filter((o) => !o.target).length;
    log.info({ exports: served, failed, nbdSocket: config.nbdSocket, controlSocket: config.controlSocket, tcp: daemon.info.tcp }, 'nbdsnap daemon ready');
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
    await this.control.close();
    await ctx.nbd.close();
    let failed: unknown;
    // One export that fails to close must not leave the others (or the catalog) open.
    const attempt = async (what: string, step: () => Promise<void>): Promise<void> => {
      try {
        await step();
      } catch (err) {
        ctx.log.error({ err, export: what }, 'closing failed');
        failed ??= err;
      }
    };
    for (const origin of ctx.registry.origins.values()) {
      for (const snap of origin.snapshots.values()) {
        const target = snap.target;
        if (target) await attempt(snap.row.name, () => origin.target!.removeSnapshot(target));
      }
      const target = origin.target;
      if (target) await attempt(origin.row.name, async () => (await target.flush(), await target.close()));
    }
    ctx.registry.origins.clear();
    ctx.catalog.close();
    fs.rmSync(ctx.config.nbdSocket, { force: true });
    if (failed) throw failed;
    ctx.log.info('stopped');
  }
}
