// `nbdsnap daemon --metrics`: the real daemon scraped over HTTP while real clients (qemu-io,
// nbdinfo, fio) run known workloads, its values checked against what was done and against
// `nbdsnap status`, the text checked by `promtool check metrics`; off by default, a bare port on
// loopback, a port in use refused at start, and starts counted across a restart.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/client.ts';
import { mustRun } from '../support/exec.ts';
import { nbdUri, runCli, startDaemon, tempDir, writePattern, type DaemonHandle } from '../support/daemon-harness.ts';
import { parseMetrics, promtool, samplesOf, valueOf, type Sample } from '../support/metrics-text.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

const daemons: DaemonHandle[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function fresh(): string {
  const dir = tempDir('metrics-e2e-');
  dirs.push(dir);
  return dir;
}

async function daemonIn(dir: string, opts: { args?: string[]; env?: Record<string, string> } = {}): Promise<DaemonHandle> {
  const d = await startDaemon(dir, opts);
  daemons.push(d);
  return d;
}

async function metricsPort(d: DaemonHandle): Promise<number> {
  const info = await callDaemon(d.control, { op: 'daemon.info' });
  expect(info.metrics?.host).toBe('127.0.0.1');
  return info.metrics!.port;
}

async function scrapeText(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The `dmsetup status` numbers of a snapshot: allocated, total, metadata sectors. */
async function statusNumbers(d: DaemonHandle, name: string): Promise<number[]> {
  const [line] = await d.ok('status', name, '--json');
  const m = /^(\d+)\/(\d+) (\d+)$/.exec(line.info);
  if (!m) throw new Error(`no usage in status ${line.info}`);
  return m.slice(1).map(Number);
}

function stateOf(samples: Sample[], snapshot: string): string[] {
  return samplesOf(samples, 'nbdsnap_snapshot_state', { snapshot }).filter((s) => s.value === 1).map((s) => s.labels.state);
}

describe('daemon --metrics', () => {
  it('counts known workloads, matches nbdsnap status, flips the state when a small COW fills, and passes promtool', async () => {
    const dir = fresh();
    const image = path.join(dir, 'base.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, 8 * MiB);
    const d = await daemonIn(dir, { args: ['--metrics', '127.0.0.1:0'] });
    const port = await metricsPort(d);
    await d.ok('origin', 'add', 'base', image);
    // 1 MiB of 4 KiB chunks: the header, one metadata area, and room for 254 exceptions.
    await d.ok('snapshot', 'create', 'snap', '--origin', 'base', '--size', '1M');

    await writePattern(d, 'base', 0, 64 * KiB, 0x11); // 16 chunks copied out
    await writePattern(d, 'snap', MiB, 12 * KiB, 0x22); // 3 whole chunks: no copy
    await writePattern(d, 'snap', 2 * MiB + 512, 512, 0x33); // a partial chunk: one copy
    await mustRun('nbdinfo', ['--map', nbdUri(d, 'base')]);
    let samples = parseMetrics(await scrapeText(port));
    const at = (name: string, labels: Record<string, string> = {}) => valueOf(samples, name, labels);
    expect({
      baseWritten: at('nbdsnap_export_request_bytes_total', { export: 'base', command: 'write' }),
      baseWrites: at('nbdsnap_export_requests_total', { export: 'base', command: 'write' }),
      snapWritten: at('nbdsnap_export_request_bytes_total', { export: 'snap', command: 'write' }),
      blockStatus: (at('nbdsnap_export_requests_total', { export: 'base', command: 'block_status' }) ?? 0) > 0,
      errors: samplesOf(samples, 'nbdsnap_export_request_errors_total').reduce((sum, s) => sum + s.value, 0),
      baseConnections: at('nbdsnap_export_connections_total', { export: 'base' }), // qemu-io, nbdinfo
      open: at('nbdsnap_export_open_connections', { export: 'base' }),
      copies: at('nbdsnap_snapshot_cow_copies_total', { snapshot: 'snap', origin: 'base' }),
      copyLatencies: at('nbdsnap_snapshot_cow_copy_duration_seconds_count', { snapshot: 'snap' }),
      exceptions: at('nbdsnap_snapshot_exceptions', { snapshot: 'snap' }),
      state: stateOf(samples, 'snap'),
    }).toEqual({
      baseWritten: 64 * KiB, baseWrites: 1, snapWritten: 12 * KiB + 512, blockStatus: true, errors: 0, baseConnections: 2, open: 0,
      copies: 17, copyLatencies: 17, exceptions: 20, state: ['valid'],
    });
    const [allocated, total, metadata] = await statusNumbers(d, 'snap');
    expect({
      allocated: at('nbdsnap_snapshot_cow_allocated_bytes', { snapshot: 'snap' }),
      total: at('nbdsnap_snapshot_cow_size_bytes', { snapshot: 'snap' }),
      metadata: at('nbdsnap_snapshot_cow_metadata_bytes', { snapshot: 'snap' }),
      ratio: at('nbdsnap_snapshot_data_ratio', { snapshot: 'snap' }),
    }).toEqual({ allocated: allocated * 512, total: total * 512, metadata: metadata * 512, ratio: expect.closeTo(allocated / total, 4) });

    // fio writes 1 MiB more to the origin: 256 more copy-outs than the COW has room for.
    await mustRun('fio', ['--name=fill', '--ioengine=nbd', `--uri=${nbdUri(d, 'base')}`, '--rw=write', '--bs=64k', '--offset=4M', '--size=1M']);
    const text = await scrapeText(port);
    samples = parseMetrics(text);
    expect({
      baseWritten: at('nbdsnap_export_request_bytes_total', { export: 'base', command: 'write' }),
      errors: at('nbdsnap_export_request_errors_total', { export: 'base', command: 'write' }), // origin writes never fail
      state: stateOf(samples, 'snap'),
      ratio: at('nbdsnap_snapshot_data_ratio', { snapshot: 'snap' }), // Data% is shown for valid snapshots only
    }).toEqual({ baseWritten: 64 * KiB + MiB, errors: 0, state: ['invalid'], ratio: undefined });
    expect((await d.ok('status', 'snap', '--json'))[0].info).toBe('Invalid');
    expect(await promtool(['check', 'metrics'], text)).toEqual({ code: 0, output: '' });
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
  });

  it('is off by default, binds 127.0.0.1 for a bare port (NBDSNAP_METRICS), counts starts across a restart', async () => {
    const dir = fresh();
    const off = await daemonIn(dir);
    expect((await callDaemon(off.control, { op: 'daemon.info' })).metrics).toBeNull();
    await off.stop();
    expect(fs.existsSync(path.join(off.dataDir, 'daemon-starts'))).toBe(false);
    for (const starts of [1, 2]) {
      const d = await daemonIn(dir, { env: { NBDSNAP_METRICS: '0' } });
      const samples = parseMetrics(await scrapeText(await metricsPort(d)));
      expect(valueOf(samples, 'nbdsnap_daemon_starts_total')).toBe(starts);
      await d.stop();
    }
  });

  it('refuses to start on a metrics port in use, saying so', async () => {
    const first = await daemonIn(fresh(), { args: ['--metrics', '127.0.0.1:0'] });
    const port = await metricsPort(first);
    const r = await runCli(['daemon', '--data-dir', path.join(fresh(), 'data'), '--metrics', `127.0.0.1:${port}`, '--log-level', 'silent']);
    expect({ code: r.code, stderr: r.stderr.trim() })
      .toEqual({ code: 1, stderr: `nbdsnap: cannot start the daemon: metrics: cannot listen on 127.0.0.1:${port}: the address is already in use` });
  });
});
