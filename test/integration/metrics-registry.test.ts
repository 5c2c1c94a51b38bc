// metrics/daemon-metrics.ts in-process, over a fake MetricsSource: every metric family is exposed
// with the values read at scrape time, in a text `promtool check metrics` accepts, over an HTTP
// listener that serves /metrics only and refuses a port in use with a clear error.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.ts';
import { DaemonMetrics } from '../../src/metrics/daemon-metrics.ts';
import type { MetricsSource, SnapshotSample } from '../../src/metrics/source.ts';
import { CMD } from '../support/nbd-test-client.ts';
import { parseMetrics, promtool, samplesOf, valueOf } from '../support/metrics-text.ts';

let cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

const valid: SnapshotSample = {
  name: 's1', origin: 'base', state: 'valid', allocatedSectors: 2072, totalSectors: 16384, metadataSectors: 24, dataPercent: 12.65, exceptions: 256, target: {}, mergeRatio: 0.5,
};
const failed: SnapshotSample = {
  name: 's2', origin: 'base', state: 'failed', allocatedSectors: null, totalSectors: null, metadataSectors: null, dataPercent: null, exceptions: null, target: null, mergeRatio: null,
};

function fakeSource(over: Partial<MetricsSource> = {}): MetricsSource {
  return {
    exportNames: () => ['base', 's1'],
    connectionCount: (name) => (name === 'base' ? 2 : 0),
    inflightBytes: () => 4096,
    snapshots: () => [valid, failed],
    ...over,
  };
}

function metrics(source = fakeSource(), listen = { host: '127.0.0.1', port: 0 }): DaemonMetrics {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'metrics-registry-'));
  const m = new DaemonMetrics({ at: listen, dataDir, log: silentLogger() });
  m.collectFrom(source);
  cleanup.push(() => fs.rmSync(dataDir, { recursive: true, force: true }), () => m.close());
  return m;
}

describe('metrics registry', () => {
  it('exposes the counters, gauges and histograms read at scrape time', async () => {
    const m = metrics();
    const base = m.nbd.connected('base');
    base.answered(CMD.WRITE, 65536, 0, performance.now());
    base.answered(CMD.READ, 512, 22, -1);
    m.nbd.connected('gone').answered(CMD.READ, 4096, 0, -1); // not served: not exposed
    m.nbd.limitHit('connections');
    m.onCopy(valid.target!, 12.5);
    const samples = parseMetrics(await m.scrape());
    const at = (name: string, labels: Record<string, string> = {}) => valueOf(samples, name, labels);
    expect({
      writes: at('nbdsnap_export_requests_total', { export: 'base', command: 'write' }),
      written: at('nbdsnap_export_request_bytes_total', { export: 'base', command: 'write' }),
      readErrors: at('nbdsnap_export_request_errors_total', { export: 'base', command: 'read' }),
      readBytes: at('nbdsnap_export_request_bytes_total', { export: 'base', command: 'read' }),
      connections: at('nbdsnap_export_connections_total', { export: 'base' }),
      open: at('nbdsnap_export_open_connections', { export: 'base' }),
      s1Trims: at('nbdsnap_export_requests_total', { export: 's1', command: 'trim' }),
    }).toEqual({ writes: 1, written: 65536, readErrors: 1, readBytes: 0, connections: 1, open: 2, s1Trims: 0 });
    expect(samplesOf(samples, 'nbdsnap_export_requests_total', { export: 'gone' })).toEqual([]);
    // Latency only for commands that ran.
    expect(at('nbdsnap_export_request_duration_seconds_count', { export: 'base', command: 'write' })).toBe(1);
    expect(samplesOf(samples, 'nbdsnap_export_request_duration_seconds_count', { command: 'read' })).toEqual([]);
    expect({
      allocated: at('nbdsnap_snapshot_cow_allocated_bytes', { snapshot: 's1' }),
      size: at('nbdsnap_snapshot_cow_size_bytes', { snapshot: 's1' }),
      metadata: at('nbdsnap_snapshot_cow_metadata_bytes', { snapshot: 's1' }),
      ratio: at('nbdsnap_snapshot_data_ratio', { snapshot: 's1' }),
      exceptions: at('nbdsnap_snapshot_exceptions', { snapshot: 's1', origin: 'base' }),
      copies: at('nbdsnap_snapshot_cow_copies_total', { snapshot: 's1' }),
      copySeconds: at('nbdsnap_snapshot_cow_copy_duration_seconds_sum', { snapshot: 's1' }),
      failedRatio: at('nbdsnap_snapshot_data_ratio', { snapshot: 's2' }),
      failedCopies: at('nbdsnap_snapshot_cow_copies_total', { snapshot: 's2' }),
      merge: at('nbdsnap_snapshot_merge_ratio', { snapshot: 's1' }),
      notMerging: at('nbdsnap_snapshot_merge_ratio', { snapshot: 's2' }),
    }).toEqual({
      allocated: 2072 * 512, size: 16384 * 512, metadata: 24 * 512, ratio: 0.1265, exceptions: 256, copies: 1, copySeconds: 0.0125,
      failedRatio: undefined, failedCopies: 0, merge: 0.5, notMerging: undefined,
    });
    const states = (snapshot: string) => Object.fromEntries(samplesOf(samples, 'nbdsnap_snapshot_state', { snapshot }).map((s) => [s.labels.state, s.value]));
    expect(states('s1')).toEqual({ valid: 1, invalid: 0, overflow: 0, merging: 0, failed: 0 });
    expect(states('s2')).toEqual({ valid: 0, invalid: 0, overflow: 0, merging: 0, failed: 1 });
    expect({
      inflight: at('nbdsnap_nbd_inflight_bytes'),
      refused: at('nbdsnap_nbd_limit_hits_total', { limit: 'connections' }),
      timeouts: at('nbdsnap_nbd_limit_hits_total', { limit: 'handshake_timeout' }),
      starts: at('nbdsnap_daemon_starts_total'),
    }).toEqual({ inflight: 4096, refused: 1, timeouts: 0, starts: 1 });
    expect(at('nbdsnap_daemon_uptime_seconds')).toBeGreaterThan(0);
    expect(at('process_start_time_seconds')).toBeGreaterThan(0); // prom-client's defaults
  });

  it('passes promtool check metrics, unknown commands and a failed snapshot included', async () => {
    const m = metrics();
    m.nbd.connected('base').answered(42, 0, 22, -1);
    const text = await m.scrape();
    expect(valueOf(parseMetrics(text), 'nbdsnap_export_requests_total', { export: 'base', command: 'other' })).toBe(1);
    const { code, output } = await promtool(['check', 'metrics'], text);
    expect({ code, output }).toEqual({ code: 0, output: '' });
  });

  it('serves /metrics over HTTP (GET and HEAD), 404 elsewhere, 405 for other methods', async () => {
    const m = metrics();
    const { host, port } = await m.listen();
    expect(host).toBe('127.0.0.1');
    const url = `http://127.0.0.1:${port}`;
    const ok = await fetch(`${url}/metrics`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await ok.text()).toMatch(/^# HELP nbdsnap_/m);
    const head = await fetch(`${url}/metrics`, { method: 'HEAD' });
    expect([head.status, await head.text()]).toEqual([200, '']);
    expect((await fetch(`${url}/metrics?x=1`)).status).toBe(200);
    expect((await fetch(`${url}/`)).status).toBe(404);
    expect((await fetch(`${url}/metrics/x`)).status).toBe(404);
    const post = await fetch(`${url}/metrics`, { method: 'POST' });
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
  });

  it('a port in use is an error naming the address', async () => {
    const { port } = await metrics().listen();
    await expect(metrics(fakeSource(), { host: '127.0.0.1', port }).listen())
      .rejects.toThrow(`metrics: cannot listen on 127.0.0.1:${port}: the address is already in use`);
  });
});
