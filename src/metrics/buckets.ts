// Histogram counts kept as plain numbers, so that observing costs a few comparisons and three
// additions (no label hashing, no allocation): the NBD request path and the copy-out path
// observe into these, and prom-client reads them only at scrape time (histogram-metric.ts).

/** Upper bounds, in seconds, of the latency buckets: 50 µs (a page-cache hit) to 10 s (a stuck disk). */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

const LATENCY_BUCKETS_MS = LATENCY_BUCKETS_SECONDS.map((s) => s * 1000);

/** One histogram series: observations in milliseconds, exposed in seconds. */
export class BucketCounts {
  /** The buckets' upper bounds in seconds (the `le` labels). */
  readonly boundsSeconds = LATENCY_BUCKETS_SECONDS;
  /** counts[i]: observations in (bound[i-1], bound[i]]; the last slot: above every bound. Not cumulative. */
  readonly counts = new Float64Array(LATENCY_BUCKETS_SECONDS.length + 1);
  count = 0;
  sumMs = 0;

  observe(ms: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS_MS.length && ms > LATENCY_BUCKETS_MS[i]) i++;
    this.counts[i]++;
    this.count++;
    this.sumMs += ms;
  }
}
