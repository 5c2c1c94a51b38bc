// Daemon-wide metrics: bytes in flight and limits hit in the NBD server, uptime, starts, and
// prom-client's default process and Node.js metrics (process_start_time_seconds among them).
import { collectDefaultMetrics, type Registry } from 'prom-client';
import { LIMIT_NAMES } from '../nbd/limits.ts';
import { collectedCounter, collectedGauge } from './collected.ts';
import type { NbdStats } from './request-stats.ts';
import type { MetricsSource } from './source.ts';

export interface DaemonFacts {
  /** Daemon starts with metrics on this data dir, this one included (start-count.ts). */
  starts: number;
  /** performance.now() when the daemon started. */
  startedMs: number;
}

/**
 * prom-client defaults that are gauges with a counter's `_total` suffix, which `promtool check
 * metrics` rejects; nodejs_active_handles, _requests and _resources (by type) hold the same numbers.
 */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export function registerDaemonMetrics(registry: Registry, stats: NbdStats, source: MetricsSource, facts: DaemonFacts): void {
  collectedGauge(registry, {
    name: 'nbdsnap_nbd_inflight_bytes',
    help: 'Bytes the NBD server holds for clients now: request payloads being processed and replies not yet flushed (capped by the server-wide in-flight limit).',
    read: (emit) => emit({}, source.inflightBytes()),
  });
  collectedCounter(registry, {
    name: 'nbdsnap_nbd_limit_hits_total',
    help: 'Times an NBD server limit refused a client (connections), dropped it (handshake_timeout) or paused reading its requests (inflight_requests, inflight_bytes, send_buffer, server_inflight_bytes).',
    labelNames: ['limit'],
    read: (emit) => LIMIT_NAMES.forEach((limit) => emit({ limit }, stats.limitHits[limit])),
  });
  collectedGauge(registry, {
    name: 'nbdsnap_daemon_uptime_seconds',
    help: 'Seconds since the daemon started.',
    read: (emit) => emit({}, (performance.now() - facts.startedMs) / 1000),
  });
  collectedCounter(registry, {
    name: 'nbdsnap_daemon_starts_total',
    help: 'Daemon starts with metrics on, on this data dir, this one included (kept in <data-dir>/daemon-starts): restarts are its increase.',
    read: (emit) => emit({}, facts.starts),
  });
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
}
