import { describe, expect, it } from 'vitest';
import { BucketCounts, LATENCY_BUCKETS_SECONDS } from './buckets.ts';
import { histogramValues } from './histogram-metric.ts';

describe('BucketCounts', () => {
  it('puts a value in the first bucket whose bound is at least the value (le is inclusive)', () => {
    const counts = new BucketCounts();
    counts.observe(0.05); // exactly 50 µs: the first bucket
    counts.observe(0.0501);
    counts.observe(10_000); // exactly 10 s: the last finite bucket
    counts.observe(10_001); // above every bound
    expect(counts.counts[0]).toBe(1);
    expect(counts.counts[1]).toBe(1);
    expect(counts.counts[LATENCY_BUCKETS_SECONDS.length - 1]).toBe(1);
    expect(counts.counts[LATENCY_BUCKETS_SECONDS.length]).toBe(1);
    expect(counts.count).toBe(4);
    expect(counts.sumMs).toBeCloseTo(20_001.1001, 6);
  });
});

describe('histogramValues', () => {
  it('gives cumulative _bucket lines ending with +Inf = _count, and _sum in seconds', () => {
    const counts = new BucketCounts();
    for (const ms of [0.01, 3, 3, 20_000]) counts.observe(ms);
    const values = histogramValues('h', { labels: { export: 'e' }, counts });
    const buckets = values.filter((v) => v.metricName === 'h_bucket');
    expect(buckets.map((v) => v.labels.le)).toEqual([...LATENCY_BUCKETS_SECONDS.map(String), '+Inf']);
    expect(buckets.every((v) => v.labels.export === 'e')).toBe(true);
    const at = (le: string): number => buckets.find((v) => v.labels.le === le)!.value;
    expect([at('0.00005'), at('0.0025'), at('0.005'), at('10'), at('+Inf')]).toEqual([1, 1, 3, 3, 4]);
    expect(values.find((v) => v.metricName === 'h_count')).toEqual({ metricName: 'h_count', labels: { export: 'e' }, value: 4 });
    expect(values.find((v) => v.metricName === 'h_sum')!.value).toBeCloseTo(20.00601, 9);
  });
});
