// Per-export metrics (label `export`): requests, errors, bytes and latency by command, and
// connections. Only exports served at scrape time are exposed; the stats of removed ones are dropped.
import type { Registry } from 'prom-client';
import { collectedCounter, collectedGauge, type Emit } from './collected.ts';
import { collectedHistogram, type HistogramSeries } from './histogram-metric.ts';
import { COMMANDS, OTHER_SLOT, type ExportStats, type NbdStats } from './request-stats.ts';
import type { MetricsSource } from './source.ts';

type Served = () => [string, ExportStats][];

/** Every command of every served export; 'other' only once such a request was seen. */
function* commandSlots(served: Served): Generator<[{ export: string; command: string }, ExportStats, number]> {
  for (const [name, stats] of served()) {
    for (const [type, command] of COMMANDS) yield [{ export: name, command }, stats, type];
    if (stats.requests[OTHER_SLOT] > 0) yield [{ export: name, command: 'other' }, stats, OTHER_SLOT];
  }
}

function perCommand(served: Served, field: 'requests' | 'errors' | 'bytes'): (emit: Emit) => void {
  return (emit) => {
    for (const [labels, stats, slot] of commandSlots(served)) emit(labels, stats[field][slot]);
  };
}

function* latencySeries(served: Served): Generator<HistogramSeries> {
  for (const [labels, stats, slot] of commandSlots(served)) {
    const counts = stats.latency[slot];
    if (counts.count > 0) yield { labels, counts };
  }
}

export function registerExportMetrics(registry: Registry, stats: NbdStats, source: MetricsSource): void {
  const served: Served = () => {
    const names = source.exportNames();
    stats.retainOnly(new Set(names));
    return names.map((name) => [name, stats.forExport(name)]);
  };
  const labelNames = ['export', 'command'];
  collectedCounter(registry, {
    name: 'nbdsnap_export_requests_total',
    help: 'NBD requests answered, successfully or not, by export and command.',
    labelNames,
    read: perCommand(served, 'requests'),
  });
  collectedCounter(registry, {
    name: 'nbdsnap_export_request_errors_total',
    help: 'NBD requests answered with an error (refused by validation, or failed on the device), by export and command.',
    labelNames,
    read: perCommand(served, 'errors'),
  });
  collectedCounter(registry, {
    name: 'nbdsnap_export_request_bytes_total',
    help: 'Bytes covered by successful NBD requests (read: bytes read, write: bytes written, trim/write_zeroes/cache/block_status: range length).',
    labelNames,
    read: perCommand(served, 'bytes'),
  });
  collectedHistogram(registry, {
    name: 'nbdsnap_export_request_duration_seconds',
    help: 'Time from the start of an NBD request to its reply being queued, by export and command (commands seen only).',
    read: () => latencySeries(served),
  });
  collectedCounter(registry, {
    name: 'nbdsnap_export_connections_total',
    help: 'NBD connections that entered transmission on the export since the daemon started.',
    labelNames: ['export'],
    read: (emit) => served().forEach(([name, s]) => emit({ export: name }, s.connections)),
  });
  collectedGauge(registry, {
    name: 'nbdsnap_export_open_connections',
    help: 'NBD connections to the export now (transmission phase).',
    labelNames: ['export'],
    read: (emit) => source.exportNames().forEach((name) => emit({ export: name }, source.connectionCount(name))),
  });
}
