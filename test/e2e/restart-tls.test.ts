// Live restart with TLS connections (issue 14): a TLS session's keys cannot leave the process that
// negotiated it, so the old daemon hands the successor a plaintext socket in its place and stays,
// relaying, until those connections end. Real clients (qemu-io with tls-creds-psk, nbdsh over
// nbds+unix and over nbds:// TCP, and a plaintext nbdsh beside them) keep writing and verifying
// through three restarts; the relaying process holds nothing else and exits when its last TLS
// connection ends, or when the daemon stops. A successor that fails leaves the TLS connections
// served by the old daemon as before.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../support/exec.ts';
import { daemonPid, processAlive, tempDir, nbdUri, type DaemonHandle } from '../support/daemon-harness.ts';
import { startNbdsh, startQemuIo, type VerifyingClient } from '../support/restart-clients.ts';
import {
  api, clients, errorLines, expectConnections, expectGone, expectProgress, randomFile, restartWait, runCleanups, world,
} from '../support/restart-checks.ts';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-certs.ts';

const MiB = 1024 * 1024;
const env = { ...process.env, PATH: `/usr/bin:${process.env.PATH}`, LIBNBD_DEBUG: '0' };
let certs: TlsFixtures;
/** A directory with keys.psk, as qemu's tls-creds-psk wants it. */
let qemuPskDir: string;
let certsDir: string;

beforeAll(() => {
  const dir = (certsDir = tempDir('restart-tls-certs-'));
  certs = makeTlsFixtures(path.join(dir, 'certs'));
  qemuPskDir = path.join(dir, 'qemu-psk');
  fs.mkdirSync(qemuPskDir);
  fs.copyFileSync(certs.psk.alice, path.join(qemuPskDir, 'keys.psk'));
});
afterEach(runCleanups);
afterAll(() => fs.rmSync(certsDir, { recursive: true, force: true }));

/** A daemon offering TLS with PSK (plaintext allowed too) and listening on TCP as well. */
async function tlsWorld(prefix: string, extraEnv: Record<string, string> = {}): Promise<DaemonHandle> {
  return world(prefix, { env: { NBDSNAP_TLS: 'on', NBDSNAP_TLS_PSK: certs.psk.server, ...extraEnv }, args: ['--listen', '127.0.0.1:0'] });
}

function tlsUnixUri(d: DaemonHandle, exportName: string): string {
  return `nbds+unix://alice@/${exportName}?socket=${d.nbdSocket}&tls-psk-file=${certs.psk.alice}`;
}

async function tlsTcpUri(d: DaemonHandle, exportName: string): Promise<string> {
  const info = await api(d, { op: 'daemon.info' });
  if (!info.tcp) throw new Error('the daemon has no TCP listener');
  return `nbds://alice@${info.tcp.host}:${info.tcp.port}/${exportName}?tls-psk-file=${certs.psk.alice}`;
}

/** qemu-io over TLS (PSK, user alice) on the daemon's Unix socket. */
function qemuIoTls(d: DaemonHandle, exportName: string, label: string, offset: number, length: number): VerifyingClient {
  const image = [
    '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${qemuPskDir},username=alice`,
    '--image-opts', `driver=nbd,server.type=unix,server.path=${d.nbdSocket},export=${exportName},tls-creds=tls0`,
  ];
  return startQemuIo({ label, uri: '', image, offset, length });
}

async function baseAndSnapshot(d: DaemonHandle): Promise<void> {
  const base = path.join(d.dir, 'base.img');
  randomFile(base, 32 * MiB);
  await api(d, { op: 'origin.add', name: 'base', path: base });
  await api(d, { op: 'snapshot.create', name: 's1', origin: 'base', sizeBytes: 16 * MiB });
}

describe('live restart with TLS connections', () => {
  it('three restarts: TLS connections (qemu-io, nbdsh over Unix and TCP) are relayed by the first daemon, verified throughout; it exits when they end', async () => {
    const d = await tlsWorld('restart-tls-');
    await baseAndSnapshot(d);
    const dir = d.dir;
    const list = clients([
      qemuIoTls(d, 'base', 'qemu-io-tls-base', 0, 4 * MiB),
      startNbdsh({ label: 'nbdsh-tls-base', uri: tlsUnixUri(d, 'base'), offset: 8 * MiB, length: 4 * MiB, dir, localFiles: true }),
      startNbdsh({ label: 'nbdsh-tls-tcp-s1', uri: await tlsTcpUri(d, 's1'), offset: 0, length: 4 * MiB, dir, localFiles: true }),
      startNbdsh({ label: 'nbdsh-plain-s1', uri: nbdUri(d, 's1'), offset: 8 * MiB, length: 4 * MiB, dir }),
    ]);
    await expectProgress(list, 2, 'before the restarts');
    await expectConnections(d, 4);
    const first = await daemonPid(d);

    const r1 = await restartWait(d);
    expect(r1).toMatchObject({ state: 'done', previousPid: first, connections: 4, relayed: 3, closed: 0 });
    expect(processAlive(first), 'the first daemon stays to relay the TLS connections').toBe(true);
    await expectProgress(list, 3, 'after restart 1');
    // It holds nothing else: no listener (new connections reach the successor), no lock.
    const probe = await run('nbdinfo', ['--size', tlsUnixUri(d, 'base')], { env });
    expect(probe.code, probe.stderr).toBe(0);
    expect((await api(d, { op: 'daemon.info' })).pid).toBe(r1.pid);
    expect(fs.existsSync(d.nbdSocket) && fs.existsSync(d.control)).toBe(true);

    // The successor sees the relayed connections as plain ones: it hands all 4 over and exits.
    const r2 = await restartWait(d);
    expect(r2).toMatchObject({ state: 'done', previousPid: r1.pid, connections: 4, relayed: 0, closed: 0 });
    await expectGone(r1.pid);
    await expectProgress(list, 3, 'after restart 2');
    const r3 = await restartWait(d);
    expect(r3).toMatchObject({ connections: 4, relayed: 0, closed: 0 });
    await expectGone(r2.pid);
    await expectProgress(list, 3, 'after restart 3');
    expect(processAlive(first), 'the relay goes on while its TLS clients do').toBe(true);

    const reports = await Promise.all(list.map((c) => c.stop()));
    for (const r of reports) expect(r.verifiedBytes, r.label).toBeGreaterThan(0);
    await expectGone(first);
    expect(d.log()).toMatch(/"msg":"live restart: the last relayed TLS connection ended; exiting"/);
    expect(errorLines(d)).toEqual([]);
    // TLS works on the last successor's own connections too.
    const after = await run('nbdinfo', ['--size', await tlsTcpUri(d, 's1')], { env });
    expect(after.code, after.stderr).toBe(0);
  }, 300_000);

  it('a daemon stop while a TLS connection is relayed: the relaying process ends too', async () => {
    const d = await tlsWorld('restart-tls-stop-');
    await baseAndSnapshot(d);
    const list = clients([startNbdsh({ label: 'nbdsh-tls', uri: tlsUnixUri(d, 'base'), offset: 0, length: 4 * MiB, dir: d.dir, localFiles: true })]);
    await expectProgress(list, 2, 'before the restart');
    const r = await restartWait(d);
    expect(r).toMatchObject({ connections: 1, relayed: 1 });
    await expectProgress(list, 2, 'after the restart');
    process.kill(r.pid, 'SIGTERM');
    await expectGone(r.pid);
    await expectGone(r.previousPid);
    list[0].kill();
  }, 120_000);

  it('a successor that fails: the TLS connections go on with the old daemon, nothing relayed', async () => {
    const d = await tlsWorld('restart-tls-fail-', { NBDSNAP_FAULT: 'restart:successor-before-ready' });
    await baseAndSnapshot(d);
    const list = clients([
      qemuIoTls(d, 'base', 'qemu-io-tls', 0, 4 * MiB),
      startNbdsh({ label: 'nbdsh-tls', uri: tlsUnixUri(d, 's1'), offset: 0, length: 4 * MiB, dir: d.dir, localFiles: true }),
    ]);
    await expectProgress(list, 2, 'before the restart');
    const pid = await daemonPid(d);
    for (let i = 0; i < 2; i++) {
      const r = await d.cli('restart', '--wait');
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`pid ${pid} goes on serving`));
      await expectProgress(list, 2, `after failed restart ${i + 1}`);
    }
    expect(await daemonPid(d)).toBe(pid);
    const reports = await Promise.all(list.map((c) => c.stop()));
    for (const r of reports) expect(r.verifiedBytes, r.label).toBeGreaterThan(0);
  }, 180_000);
});
