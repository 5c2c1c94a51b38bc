// The NBD server's side of the metrics: plain counters per export, updated on the request path
// (nbd/session.ts calls `answered` once per request, only when metrics are on) and read by the
// prom-client collectors at scrape time (export-metrics.ts, daemon-wide.ts).
import { LIMIT_NAMES, type LimitName } from '../nbd/limits.ts';
import type { NbdObserver, RequestStats } from '../nbd/session.ts';
import { Cmd } from '../nbd/wire.ts';
import { BucketCounts } from './buckets.ts';

/** The counted commands and their `command` label; any other type (refused by validation) is 'other'. */
export const COMMANDS: readonly (readonly [number, string])[] = [
  [Cmd.READ, 'read'],
  [Cmd.WRITE, 'write'],
  [Cmd.FLUSH, 'flush'],
  [Cmd.TRIM, 'trim'],
  [Cmd.CACHE, 'cache'],
  [Cmd.WRITE_ZEROES, 'write_zeroes'],
  [Cmd.BLOCK_STATUS, 'block_status'],
];

/** Slot of the commands numbered past the known ones. */
export const OTHER_SLOT = Math.max(...COMMANDS.map(([type]) => type)) + 1;

/** One export's requests since the daemon started; arrays are indexed by command type (OTHER_SLOT: the rest). */
export class ExportStats implements RequestStats {
  /** Connections that entered transmission on this export. */
  connections = 0;
  readonly requests = new Float64Array(OTHER_SLOT + 1);
  readonly errors = new Float64Array(OTHER_SLOT + 1);
  /** Bytes covered by successful requests (the payload of READ and WRITE). */
  readonly bytes = new Float64Array(OTHER_SLOT + 1);
  readonly latency = Array.from({ length: OTHER_SLOT + 1 }, () => new BucketCounts());

  answered(type: number, length: number, errno: number, startedMs: number): void {
    const slot = type >= 0 && type < OTHER_SLOT ? type : OTHER_SLOT;
    this.requests[slot]++;
    if (errno === 0) this.bytes[slot] += length;
    else this.errors[slot]++;
    if (startedMs >= 0) this.latency[slot].observe(performance.now() - startedMs);
  }
}

export class NbdStats implements NbdObserver {
  readonly limitHits = Object.fromEntries(LIMIT_NAMES.map((name) => [name, 0])) as Record<LimitName, number>;
  private readonly byExport = new Map<string, ExportStats>();

  connected(exportName: string): ExportStats {
    const stats = this.forExport(exportName);
    stats.connections++;
    return stats;
  }

  limitHit(limit: LimitName): void {
    this.limitHits[limit]++;
  }

  forExport(exportName: string): ExportStats {
    let stats = this.byExport.get(exportName);
    if (!stats) {
      stats = new ExportStats();
      this.byExport.set(exportName, stats);
    }
    return stats;
  }

  /** Forget the exports not served any more (a later export of the same name starts from zero). */
  retainOnly(exportNames: ReadonlySet<string>): void {
    for (const name of this.byExport.keys()) if (!exportNames.has(name)) this.byExport.delete(name);
  }
}
