// The daemon's metrics (--metrics HOST:PORT): the hooks the NBD server and the snapshots report
// to, a prom-client registry whose collectors read those counters and the daemon's live state at
// scrape time, and the HTTP listener. Built before the exports (their hooks are handed to the NBD
// server and the lifecycle), listening once they are served. docs/metrics.md lists every metric.
import { Registry } from 'prom-client';
import type { Logger } from '../log.ts';
import { CopyStats } from './copy-stats.ts';
import { registerDaemonMetrics } from './daemon-wide.ts';
import { registerExportMetrics } from './export-metrics.ts';
import { serveMetrics, type HostPort, type MetricsEndpoint } from './http-endpoint.ts';
import { NbdStats } from './request-stats.ts';
import { registerSnapshotMetrics } from './snapshot-metrics.ts';
import type { MetricsSource, SnapshotSample } from './source.ts';
import { countStart } from './start-count.ts';

/**
 * `read` once per scrape: a scrape runs every collector in the same tick, so they all see the
 * same sample (and a snapshot's status is read once, not once per metric).
 */
function oncePerTick<T>(read: () => T): () => T {
  let cached: { value: T } | undefined;
  return () => {
    if (!cached) {
      cached = { value: read() };
      setImmediate(() => (cached = undefined));
    }
    return cached.value;
  };
}

export class DaemonMetrics {
  /** The NBD server's observer (NbdServerOptions.observer). */
  readonly nbd = new NbdStats();
  private readonly copies = new CopyStats();
  /** The snapshots' copy-out hook (a CopyObserver). */
  readonly onCopy = this.copies.observe;
  private readonly registry = new Registry();
  private readonly startedMs = performance.now();
  private readonly starts: number;
  private readonly at: HostPort;
  private readonly log: Logger;
  private endpoint: MetricsEndpoint | undefined;

  /** `at`: where listen() will serve. Counts this start in `dataDir` (start-count.ts). */
  constructor(opts: { at: HostPort; dataDir: string; log: Logger }) {
    this.at = opts.at;
    this.log = opts.log;
    this.starts = countStart(opts.dataDir, opts.log);
  }

  /** Register every metric over `source`; then scrape() or listen(). Call once. */
  collectFrom(source: MetricsSource): void {
    const snapshots: () => SnapshotSample[] = oncePerTick(() => source.snapshots());
    registerExportMetrics(this.registry, this.nbd, source);
    registerSnapshotMetrics(this.registry, snapshots, this.copies);
    registerDaemonMetrics(this.registry, this.nbd, source, { starts: this.starts, startedMs: this.startedMs });
  }

  /** Serve /metrics; resolves with the bound address. */
  async listen(): Promise<HostPort> {
    this.endpoint = await serveMetrics(this.registry, this.at, this.log);
    this.log.info({ host: this.endpoint.address.host, port: this.endpoint.address.port }, 'serving metrics');
    return this.endpoint.address;
  }

  /** The text a scrape gets. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  async close(): Promise<void> {
    await this.endpoint?.close();
    this.endpoint = undefined;
  }
}
