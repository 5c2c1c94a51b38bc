// Live restart (issue 14) through the real daemon, CLI and clients: `nbdsnap restart` hands every
// socket and NBD connection to a successor process while fio (--verify=crc32c), qemu-io and an
// nbdsh client with structured replies off keep writing and verifying on an origin and two
// snapshots; snapshots keep their point in time. A successor that dies or meets a broken config
// leaves the old daemon serving. A restart during a merge, a create/remove storm and with
// overflowed/invalid snapshots; restart without --wait, a second restart meanwhile, and socket
// files that never disappear.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/client.ts';
import { ControlError, type RestartResult, type SnapshotInfo } from '../../src/control/api.ts';
import { mustRun, run } from '../support/exec.ts';
import {
  BIN, daemonPid, processAlive, readExport, startDaemon, stopDaemonChain, tempDir, nbdUri, writePattern, type DaemonHandle,
} from '../support/daemon-harness.ts';
import {
  stalledHandshake, startFio, startNbdsh, startProbes, startQemuIo, type ClientReport,
} from '../support/restart-clients.ts';
import {
  api, cleanups, clients, errorLines, expectAllRunning, expectConnections, expectGone, expectProgress, randomFile, restartWait,
  runCleanups, same, world,
} from '../support/restart-checks.ts';
import { waitFor } from '../support/wait-for.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

afterEach(runCleanups);

describe('live restart under verified load', () => {
  it('20 restarts with fio, qemu-io and nbdsh (structured replies on and off) on an origin and two snapshots: no error, every write verified, point in time kept', async () => {
    const SIZE = 64 * MiB;
    const d = await world('restart-load-');
    const base = path.join(d.dir, 'base.img');
    randomFile(base, SIZE);
    await api(d, { op: 'origin.add', name: 'base', path: base });
    await api(d, { op: 'snapshot.create', name: 's1', origin: 'base', sizeBytes: 48 * MiB });
    const atS1 = await readExport(d, 'base');
    await writePattern(d, 'base', 20 * MiB, MiB, 0x5a); // s1 and s2 differ here
    await api(d, { op: 'snapshot.create', name: 's2', origin: 'base', sizeBytes: 48 * MiB, chunkSectors: 16 });
    const atS2 = await readExport(d, 'base');
    expect(same(atS1, atS2, 20 * MiB, 21 * MiB)).toBe(false);

    // Each export: fio (2 connections) on [R, R+8M), qemu-io on [R+8M, R+12M), nbdsh on
    // [R+12M, R+16M); R = 0 on the origin (whose writes the snapshots must not see) and 32M on
    // the snapshots (whose writes stay in their COW).
    const load = clients(['base', 's1', 's2'].flatMap((name) => {
      const at = name === 'base' ? 0 : 32 * MiB;
      const uri = nbdUri(d, name);
      return [
        startFio({ label: `fio-${name}`, dir: d.dir, uri, offset: at, length: 8 * MiB, numjobs: 2, rate: '1m' }),
        startQemuIo({ label: `qemu-io-${name}`, uri, offset: at + 8 * MiB, length: 4 * MiB }),
        startNbdsh({ label: `nbdsh-${name}`, dir: d.dir, uri, offset: at + 12 * MiB, length: 4 * MiB }),
      ];
    }));
    const connections = load.reduce((n, c) => n + c.connections, 0);
    expect(connections).toBe(12);
    await expectProgress(load, 1, 'before the first restart');
    await expectConnections(d, connections);

    let pid = await daemonPid(d);
    const pids = [pid];
    const results: RestartResult[] = [];
    const took: number[] = [];
    for (let i = 1; i <= 20; i++) {
      expectAllRunning(load, `before restart ${i}`);
      const from = Date.now();
      const r = await restartWait(d);
      took.push(Date.now() - from);
      results.push(r);
      expect(r, `restart ${i}`).toMatchObject({ state: 'done', previousPid: pid, connections, closed: 0 });
      expect(pids).not.toContain(r.pid);
      pid = r.pid;
      pids.push(pid);
      await expectProgress(load, 1, `after restart ${i}`); // every connection is served by the successor
    }
    const lastRestartAt = Date.now();
    expectAllRunning(load, 'after the 20th restart (they must span all 20)');
    await expectProgress(load, 2, 'after the 20th restart');
    const reports: ClientReport[] = await Promise.all(load.map((c) => c.stop()));
    for (const r of reports) {
      expect(r.writtenBytes, r.label).toBeGreaterThan(0);
      expect(r.verifiedBytes, r.label).toBeGreaterThan(0);
      // Every connection was still writing after the last restart (fio: from its own iops log).
      for (const at of r.lastWriteAt) expect(at, `${r.label} wrote after the last restart`).toBeGreaterThan(lastRestartAt - 1000);
    }

    expect(await daemonPid(d)).toBe(pid);
    for (const old of pids.slice(0, -1)) await expectGone(old);
    // Point in time: outside their own writers' region the snapshots are the origin as it was.
    const [s1, s2, origin] = [await readExport(d, 's1'), await readExport(d, 's2'), await readExport(d, 'base')];
    expect(same(s1, atS1, 0, 32 * MiB), 's1 below 32M').toBe(true);
    expect(same(s1, atS1, 48 * MiB, SIZE), 's1 above 48M').toBe(true);
    expect(same(s2, atS2, 0, 32 * MiB), 's2 below 32M').toBe(true);
    expect(same(s2, atS2, 48 * MiB, SIZE), 's2 above 48M').toBe(true);
    expect(same(origin, atS2, 16 * MiB, SIZE), 'origin outside its writers').toBe(true);
    expect(same(origin, atS2, 0, 16 * MiB), 'the origin writers changed the origin').toBe(false);
    expect(errorLines(d)).toEqual([]);
    console.log(`20 restarts, each (s): ${took.map((t) => (t / 1000).toFixed(1)).join(' ')}; pauses (ms): ${results.map((r) => r.pauseMs).join(' ')}; ${reports.map((r) => `${r.label} ${(r.writtenBytes / MiB).toFixed(1)}M`).join(', ')}`);
  }, 400_000);
});

describe('a restart whose successor fails', () => {
  it('a successor that dies before serving (NBDSNAP_FAULT): exit 1 naming it, the same daemon takes everything back, clients see nothing', async () => {
    const SIZE = 16 * MiB;
    const d = await world('restart-fault-', { env: { NBDSNAP_FAULT: 'restart:successor-before-ready' } });
    const base = path.join(d.dir, 'base.img');
    randomFile(base, SIZE);
    await api(d, { op: 'origin.add', name: 'base', path: base });
    await api(d, { op: 'snapshot.create', name: 's1', origin: 'base', sizeBytes: 16 * MiB });
    const atS1 = await readExport(d, 'base');
    const load = clients([
      startFio({ label: 'fio-base', dir: d.dir, uri: nbdUri(d, 'base'), offset: 0, length: 4 * MiB, numjobs: 2, rate: '1m' }),
      startQemuIo({ label: 'qemu-io-base', uri: nbdUri(d, 'base'), offset: 4 * MiB, length: 2 * MiB }),
      startNbdsh({ label: 'nbdsh-s1', dir: d.dir, uri: nbdUri(d, 's1'), offset: 8 * MiB, length: 2 * MiB }),
      startQemuIo({ label: 'qemu-io-s1', uri: nbdUri(d, 's1'), offset: 10 * MiB, length: 2 * MiB }),
    ]);
    await expectProgress(load, 1, 'before the first restart');
    await expectConnections(d, 5);
    const pid = await daemonPid(d);
    const statusBefore = await api(d, { op: 'table' });
    for (let i = 1; i <= 3; i++) {
      const r = await d.cli('restart', '--wait', '--json');
      expect(r.code, `restart ${i}: ${r.stdout}${r.stderr}`).toBe(1);
      const failed = /the successor \(pid (\d+)\) failed: it exited \(SIGKILL\) before serving; pid (\d+) goes on serving/.exec(r.stderr);
      expect(failed, r.stderr).not.toBeNull();
      expect(Number(failed![2])).toBe(pid);
      expect(processAlive(Number(failed![1]))).toBe(false); // the old daemon waited for it
      expect(await daemonPid(d)).toBe(pid);
      await expectConnections(d, 5);
      await expectProgress(load, 1, `after failed restart ${i}`);
    }
    expect(await api(d, { op: 'table' })).toEqual(statusBefore);
    expect(d.log()).toMatch(/live restart failed: taking everything back/);
    const reports = await Promise.all(load.map((c) => c.stop()));
    for (const r of reports) expect(r.verifiedBytes, r.label).toBeGreaterThan(0);
    const [s1, origin] = [await readExport(d, 's1'), await readExport(d, 'base')];
    expect(same(s1, atS1, 0, 8 * MiB), 's1 below its writers').toBe(true);
    expect(same(s1, atS1, 12 * MiB, SIZE), 's1 above its writers').toBe(true);
    expect(same(origin, atS1, 6 * MiB, SIZE), 'origin outside its writers').toBe(true);
    expect(same(origin, atS1, 0, 6 * MiB), 'the origin writers changed the origin').toBe(false);
    expect(processAlive(pid)).toBe(true);
  }, 300_000);

  it('a config file broken before the restart: exit 1 with the config problem, the old daemon serves on; fixed, the restart succeeds and uses it', async () => {
    const dir = tempDir('restart-config-');
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const config = path.join(dir, 'nbdsnap.json');
    fs.writeFileSync(config, JSON.stringify({ autoextendThreshold: 100 }));
    const d = await startDaemon(dir, { args: ['--config', config] });
    cleanups.push(() => stopDaemonChain(d, 'SIGTERM', 10_000));
    const base = path.join(dir, 'base.img');
    randomFile(base, 16 * MiB);
    await api(d, { op: 'origin.add', name: 'base', path: base });
    await api(d, { op: 'snapshot.create', name: 'a', origin: 'base', sizeBytes: 8 * MiB });
    expect((await api(d, { op: 'snapshot.list' }))[0].autoextend).toBeNull();
    const load = clients([
      startQemuIo({ label: 'qemu-io-base', uri: nbdUri(d, 'base'), offset: 0, length: 2 * MiB }),
      startNbdsh({ label: 'nbdsh-base', dir, uri: nbdUri(d, 'base'), offset: 4 * MiB, length: 2 * MiB }),
    ]);
    await expectProgress(load, 1, 'before the restart');
    await expectConnections(d, 2);
    const pid = await daemonPid(d);

    fs.writeFileSync(config, JSON.stringify({ autoextendThreshold: 250 }));
    const bad = await d.cli('restart', '--wait');
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stderr).toMatch(/the successor \(pid \d+\) failed: .*autoextend threshold: must be \d+ to 100 .*not 250/);
    expect(bad.stderr).toContain(`pid ${pid} goes on serving`);
    expect(await daemonPid(d)).toBe(pid);
    await expectProgress(load, 2, 'after the failed restart');

    fs.writeFileSync(config, JSON.stringify({ autoextendThreshold: 80 }));
    const good = await restartWait(d);
    expect(good).toMatchObject({ state: 'done', previousPid: pid, connections: 2, closed: 0 });
    await expectProgress(load, 2, 'after the restart');
    expect((await api(d, { op: 'snapshot.list' }))[0].autoextend).toMatchObject({ threshold: 80 }); // the new config
    await Promise.all(load.map((c) => c.stop()));
    await expectGone(pid);
  }, 200_000);
});

describe('restart during other work', () => {
  it('a running merge continues in the successor and completes: the origin ends as the snapshot plus later writes', async () => {
    const SIZE = 16 * MiB;
    // One chunk per batch, held after each while the hold file exists (NBDSNAP_MERGE_HOLD, which the
    // successor inherits): the restart is certain to come in the merge's middle.
    const hold = path.join(tempDir('restart-merge-hold-'), 'hold');
    cleanups.push(() => fs.rmSync(path.dirname(hold), { recursive: true, force: true }));
    fs.writeFileSync(hold, '');
    const d = await world('restart-merge-', { env: { NBDSNAP_MERGE_BATCH_BYTES: '4096', NBDSNAP_MERGE_HOLD: hold } });
    const base = path.join(d.dir, 'base.img');
    randomFile(base, SIZE);
    await api(d, { op: 'origin.add', name: 'base', path: base });
    await api(d, { op: 'snapshot.create', name: 's1', origin: 'base', sizeBytes: 24 * MiB });
    await api(d, { op: 'snapshot.create', name: 's2', origin: 'base', sizeBytes: 24 * MiB });
    const blocks = (n: number, salt: number) => [...new Set(Array.from({ length: n }, (_, i) => (i * 7919 + salt * 104729) % (SIZE / 4096)))];
    await scatter(d, 'base', blocks(800, 1), null);
    const expected = await readExport(d, 's1');
    await scatter(d, 's1', blocks(800, 2), expected);
    expect((await readExport(d, 's1')).equals(expected)).toBe(true);
    const s2 = await readExport(d, 's2');

    await api(d, { op: 'snapshot.merge', name: 's1' });
    const pid = await daemonPid(d);
    const before = await snapshotInfo(d, 's1');
    expect(before?.state).toBe('merging');
    const r = await restartWait(d);
    expect(r).toMatchObject({ state: 'done', previousPid: pid, connections: 0, closed: 0 });
    const after = await snapshotInfo(d, 's1');
    if (after?.state !== 'merging') throw new Error(`the merge ended before the restart was done (${JSON.stringify(after)}): nothing proves it continued in the successor`);
    expect((await readExport(d, 'base')).equals(expected), 'the origin reads as the snapshot in the successor, mid-merge').toBe(true);
    await scatter(d, 'base', [3, 100, 2000, 3000, 4000], expected); // writes during the merge, after the restart
    fs.rmSync(hold);
    await waitFor(() => /"msg":"merge complete"/.test(d.log()), 'the merge to complete', 120_000, 100);
    const done = d.log().split('\n').find((l) => /"msg":"merge complete"/.test(l))!;
    expect(JSON.parse(done).pid, 'merge completed by the successor').toBe(r.pid);
    expect(await snapshotInfo(d, 's1')).toBeUndefined();
    expect((await readExport(d, 'base')).equals(expected)).toBe(true);
    expect(fs.readFileSync(base).equals(expected)).toBe(true);
    expect((await readExport(d, 's2')).equals(s2)).toBe(true);
    expect(fs.existsSync(path.join(d.dataDir, 'cow', 's1.cow'))).toBe(false);
  }, 200_000);

  it('a snapshot create/remove storm from parallel CLI loops: every command succeeds across restarts', async () => {
    const d = await world('restart-storm-');
    const base = path.join(d.dir, 'base.img');
    randomFile(base, 16 * MiB);
    await api(d, { op: 'origin.add', name: 'base', path: base });
    const load = clients([startQemuIo({ label: 'qemu-io-base', uri: nbdUri(d, 'base'), offset: 0, length: 4 * MiB })]);
    await expectProgress(load, 1, 'before the storm');
    await expectConnections(d, 1);
    const windows: [number, number][] = [];
    const commands: { args: string[]; from: number; to: number; code: number | null; stderr: string }[] = [];
    let restarting = true;
    // Two loops, each creating a snapshot and removing the one it made two steps before.
    const storm = ['a', 'b'].map(async (loop) => {
      for (let i = 0; restarting; i++) {
        const steps = [['snapshot', 'create', `${loop}${i}`, '--origin', 'base', '--size', '8M']];
        if (i >= 2) steps.push(['snapshot', 'remove', `${loop}${i - 2}`]);
        for (const args of steps) {
          const from = Date.now();
          const res = await d.cli(...args);
          commands.push({ args, from, to: Date.now(), code: res.code, stderr: res.stderr });
        }
      }
    });
    try {
      for (let i = 0; i < 2; i++) {
        await waitFor(() => commands.length >= 4 * (i + 1), 'the storm to go on', 60_000, 20);
        // A client that never finishes its handshake holds the pause for 2 s (then it is closed,
        // as documented): commands arriving meanwhile are held and answered by the successor.
        const stalled = await stalledHandshake(d.nbdSocket);
        cleanups.push(() => stalled.close());
        const from = Date.now();
        expect(await restartWait(d)).toMatchObject({ state: 'done', connections: 1, closed: 1 });
        windows.push([from, Date.now()]);
        await stalled.closed;
      }
    } finally {
      restarting = false;
      await Promise.all(storm);
    }
    const failed = commands.filter((c) => c.code !== 0);
    expect(failed.map((c) => `${c.args.join(' ')}: ${c.code} ${c.stderr}`)).toEqual([]);
    const overlapping = commands.filter((c) => windows.some(([a, b]) => c.from < b && c.to > a));
    expect(overlapping.length, 'commands run while a restart was in progress').toBeGreaterThanOrEqual(2);
    const created = commands.filter((c) => c.args[1] === 'create').map((c) => c.args[2]);
    const removed = new Set(commands.filter((c) => c.args[1] === 'remove').map((c) => c.args[2]));
    const left = created.filter((n) => !removed.has(n)).sort();
    const list = await api(d, { op: 'snapshot.list' });
    expect(list.map((s) => s.name).sort()).toEqual(left);
    expect(list.filter((s) => s.state !== 'active')).toEqual([]);
    expect(fs.readdirSync(path.join(d.dataDir, 'cow')).sort()).toEqual(left.map((n) => `${n}.cow`));
    await expectProgress(load, 1, 'after the storm');
    await Promise.all(load.map((c) => c.stop()));
    console.log(`storm: ${commands.length} commands, ${overlapping.length} during a restart`);
  }, 200_000);

  it('overflowed (PO) and invalid (P) snapshots come back identical, and a PO store fills exactly once across a restart', async () => {
    const d = await world('restart-overflow-');
    const [a, b] = [path.join(d.dir, 'a.img'), path.join(d.dir, 'b.img')];
    fs.writeFileSync(a, Buffer.alloc(8 * MiB, 0x11));
    const bData = randomFile(b, 8 * MiB);
    await api(d, { op: 'origin.add', name: 'a', path: a });
    await api(d, { op: 'origin.add', name: 'b', path: b });
    await api(d, { op: 'snapshot.create', name: 'p', origin: 'a', sizeBytes: 64 * KiB }); // P: invalidated by origin writes
    await api(d, { op: 'snapshot.create', name: 'po', origin: 'b', sizeBytes: 256 * KiB, kind: 'PO' });
    await api(d, { op: 'snapshot.create', name: 'keep', origin: 'b', sizeBytes: 16 * MiB });
    // 256 KiB of 4 KiB chunks: header and one metadata area, 62 data chunks.
    const poStatus = (await api(d, { op: 'status', name: 'po' }))[0].info;
    expect(poStatus).toBe('16/512 16');
    await writePattern(d, 'a', 0, MiB, 0x22);
    expect((await snapshotInfo(d, 'p'))?.state).toBe('invalid');

    const fill = async (from: number, count: number, byte = 0x33): Promise<number> => {
      const cmds = Array.from({ length: count }, (_, i) => ['-c', `write -P ${byte} ${(from + i) * 4096} 4096`]).flat();
      const res = await run('qemu-io', ['-f', 'raw', ...cmds, nbdUri(d, 'po')]);
      return (res.stdout.match(/^wrote 4096\/4096/gm) ?? []).length;
    };
    expect(await fill(0, 40)).toBe(40);
    expect(await restartWait(d)).toMatchObject({ state: 'done', connections: 0, closed: 0 });
    expect(await fill(40, 40)).toBe(22); // the successor knows the 40 exceptions: 22 chunks were left
    expect((await snapshotInfo(d, 'po'))?.state).toBe('overflow');
    expect(await fill(0, 1, 0x55), 'Overflow: a write to a chunk it holds is refused too').toBe(0);

    const view = async () => ({
      status: await api(d, { op: 'status' }),
      table: await api(d, { op: 'table' }),
      list: await api(d, { op: 'snapshot.list' }),
      origins: await api(d, { op: 'origin.list' }),
    });
    const before = await view();
    expect(before.status.find((l) => l.name === 'po')?.info).toBe('Overflow');
    expect(before.status.find((l) => l.name === 'p')?.info).toBe('Invalid');
    const r = await restartWait(d);
    expect(r).toMatchObject({ state: 'done', connections: 0, closed: 0 });
    // Before any write (a write that finds the store full overflows it again): every status,
    // table and list line is what it was, and Overflow still refuses a write to a chunk it holds.
    expect(await view(), 'status, table and lists right after the restart').toEqual(before);
    expect(await fill(0, 1, 0x55), 'Overflow after the restart: a write to a chunk it holds is still refused').toBe(0);
    // Reads as before; no room for a new chunk; Invalid: no I/O at all; the others untouched.
    const po = await readExport(d, 'po');
    expect(po.subarray(0, 62 * 4096).equals(Buffer.alloc(62 * 4096, 0x33))).toBe(true);
    expect(same(po, bData, 62 * 4096, 8 * MiB)).toBe(true);
    expect(await fill(100, 1)).toBe(0);
    expect((await run('qemu-io', ['-f', 'raw', '-c', 'read 0 4096', nbdUri(d, 'p')])).stdout).not.toMatch(/^read 4096\/4096/m);
    expect((await readExport(d, 'keep')).equals(bData)).toBe(true);
  }, 200_000);
});

describe('restart: plain checks', () => {
  it('without --wait answers "started" and the successor then serves; a second restart meanwhile is refused BUSY or runs after it; the socket files never go away', async () => {
    const d = await world('restart-plain-');
    const base = path.join(d.dir, 'base.img');
    fs.writeFileSync(base, Buffer.alloc(8 * MiB, 0x44));
    await api(d, { op: 'origin.add', name: 'base', path: base });
    const probes = startProbes(d.nbdSocket, d.control);
    cleanups.push(() => probes.stop());
    const windows: [number, number][] = [];
    try {
      const pid0 = await daemonPid(d);
      let t0 = Date.now();
      // No --wait: answered once the successor has started; it serves soon after.
      const started: RestartResult = await d.ok('restart', '--json');
      expect(started).toEqual({ state: 'started', previousPid: pid0, pid: expect.any(Number) });
      expect(started.pid).not.toBe(pid0);
      await waitFor(() => !processAlive(pid0), 'the old daemon to exit', 60_000, 20);
      expect(await daemonPid(d)).toBe(started.pid);
      await mustRun('qemu-io', ['-f', 'raw', '-c', 'read -P 0x44 0 1M', nbdUri(d, 'base')]);
      windows.push([t0, Date.now()]);

      // A second restart while one runs: refused BUSY while the successor loads; a new connection
      // arriving during the handover is held unread and served by the successor, after the first.
      const starts = () => (d.log().match(/"msg":"live restart: starting a successor"/g) ?? []).length;
      const n = starts();
      t0 = Date.now();
      const first = d.cli('restart', '--wait', '--json');
      await waitFor(() => starts() > n, 'the first restart to start a successor', 60_000, 5);
      const direct = await callDaemon(d.control, { op: 'daemon.restart', wait: true }).then(() => null, (err: unknown) => err);
      expect(direct).toBeInstanceOf(ControlError);
      expect(direct).toMatchObject({ code: 'BUSY', message: 'a restart is in progress already' });
      const second = d.cli('restart', '--wait', '--json');
      const [r1, r2] = await Promise.all([first, second]);
      expect(r1.code, r1.stderr).toBe(0);
      const one: RestartResult = JSON.parse(r1.stdout);
      expect(one).toMatchObject({ state: 'done', previousPid: started.pid, connections: 0 });
      console.log(`second restart via the CLI: exit ${r2.code}`);
      if (r2.code === 5) {
        expect(r2.stderr).toMatch(/a restart is in progress already/);
        expect(await daemonPid(d)).toBe(one.pid);
      } else {
        expect(r2.code, r2.stderr).toBe(0);
        const two: RestartResult = JSON.parse(r2.stdout);
        expect(two).toMatchObject({ state: 'done', previousPid: one.pid }); // serially, after the first
        expect(await daemonPid(d)).toBe(two.pid);
      }
      await mustRun('qemu-io', ['-f', 'raw', '-c', 'read -P 0x44 0 1M', nbdUri(d, 'base')]);
      windows.push([t0, Date.now()]);
    } finally {
      await probes.stop();
    }
    const p = probes.report(windows);
    expect(p.failures.filter((f) => /ENOENT|ECONNREFUSED|missing/.test(f)), 'a socket file missing or refusing').toEqual([]);
    expect(p.failures, 'a connection made during a restart dropped unanswered').toEqual([]);
    expect(p.nbd, 'NBD greetings received').toBeGreaterThan(20);
    expect(p.control, 'control replies received').toBeGreaterThan(20);
    for (const n of p.during) expect(n, 'probes while a restart was in progress').toBeGreaterThan(5);
    console.log(`probes: ${p.nbd} NBD, ${p.control} control (${p.restarting} answered RESTARTING), per restart window ${p.during.join(', ')}`);
  }, 200_000);

  it('restart --help exits 0', async () => {
    const r = await run(BIN, ['restart', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--wait/);
    expect(r.stdout).toMatch(/--timeout/);
  });
});

// ---------------------------------------------------------------------------------------------

async function snapshotInfo(d: DaemonHandle, name: string): Promise<SnapshotInfo | undefined> {
  return (await api(d, { op: 'snapshot.list' })).find((s) => s.name === name);
}

/** Write 4 KiB of a random byte at each of `blocks` (4 KiB block numbers) through qemu-io; `image` gets the same. */
async function scatter(d: DaemonHandle, name: string, blocks: number[], image: Buffer | null): Promise<void> {
  const cmds: string[] = [];
  for (const b of blocks) {
    const byte = crypto.randomInt(1, 256);
    image?.fill(byte, b * 4096, (b + 1) * 4096);
    cmds.push(`write -P ${byte} ${b * 4096} 4096`);
  }
  const file = path.join(d.dir, `scatter-${name}-${process.hrtime.bigint()}.cmds`);
  fs.writeFileSync(file, cmds.join('\n') + '\n');
  const r = await run('sh', ['-c', `qemu-io -f raw '${nbdUri(d, name)}' < ${file}`]);
  if (r.code !== 0 || /error|fail/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io failed: ${r.stdout}${r.stderr}`);
}
