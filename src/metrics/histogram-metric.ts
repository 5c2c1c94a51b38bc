// A histogram whose counts live in BucketCounts (buckets.ts), exposed at scrape time. prom-client's
// own Histogram is observed through labels (a label object checked and hashed per observation);
// the request path instead adds into a BucketCounts it already holds, and this collector turns
// those into the text format's `_bucket` (cumulative, `le`), `_sum` (seconds) and `_count` lines.
// It is registered as a metric object of the shape prom-client's registry reads (`get()` returning
// name, help, type and values with their metricName).
import type { Metric, Registry } from 'prom-client';
import type { BucketCounts } from './buckets.ts';
import type { Labels } from './collected.ts';

export interface HistogramSeries {
  labels: Labels;
  counts: BucketCounts;
}

export interface HistogramSpec {
  name: string;
  help: string;
  /** Called at every scrape: every series to expose. */
  read(): Iterable<HistogramSeries>;
}

interface Value {
  metricName: string;
  labels: Labels;
  value: number;
}

/** The text-format lines of one series, in the order Prometheus expects them. */
export function histogramValues(name: string, { labels, counts }: HistogramSeries): Value[] {
  const values: Value[] = [];
  let cumulative = 0;
  counts.boundsSeconds.forEach((bound, i) => {
    cumulative += counts.counts[i];
    values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: String(bound) }, value: cumulative });
  });
  values.push(
    { metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: counts.count },
    { metricName: `${name}_sum`, labels, value: counts.sumMs / 1000 },
    { metricName: `${name}_count`, labels, value: counts.count },
  );
  return values;
}

export function collectedHistogram(registry: Registry, spec: HistogramSpec): void {
  const { name, help } = spec;
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: async () => ({ name, help, type: 'histogram', aggregator: 'sum', values: [...spec.read()].flatMap((s) => histogramValues(name, s)) }),
    /** Nothing to reset: the counts belong to the observed objects. */
    reset: () => undefined,
  };
  registry.registerMetric(metric as unknown as Metric);
}
