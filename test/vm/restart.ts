// Live restart against the real kernel (issue 14): ext4 on /dev/nbdX for an origin (two
// connections) and a snapshot, a verifying writer on each, and ten `nbdsnap restart` while they
// write. Nothing may notice: no I/O error in dmesg, no writer error, e2fsck clean afterwards.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { NbdsnapDaemon, freeNbd, freshDir, nbdConnected, nbdDetach, nbdSectors, nbdsnapBin, projectRoot, run, waitFor, zeroFile, log } from './guest.ts';

const RESTARTS = 10;
/** Kernel messages that mean a client saw a failure (a dropped connection, an error, a timeout). */
const KERNEL_TROUBLE = /I\/O error|Buffer I\/O|EXT4-fs (error|warning)|nbd\d+: .*(dead|timed out|error|Receive control failed|shutting down|Attempted send)/i;

interface Writer {
  progress(): number;
  running(): boolean;
  stderr(): string;
  done: Promise<{ code: number | null; stderr: string }>;
}

function startWriter(dir: string, stop: string, progressFile: string): Writer {
  const child = spawn('bash', [path.join(projectRoot, 'test/vm/verify-writer.sh'), dir, stop, progressFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  let closed = false;
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return {
    progress: () => Number(fs.existsSync(progressFile) ? fs.readFileSync(progressFile, 'utf8').trim() || 0 : 0),
    running: () => !closed,
    stderr: () => stderr.trim(),
    done: new Promise((resolve) => child.on('close', (code) => ((closed = true), resolve({ code, stderr })))),
  };
}

async function attachCli(daemon: NbdsnapDaemon, name: string, used: string[], connections = 1): Promise<string> {
  const dev = freeNbd(used);
  daemon.cli('attach', name, dev, ...(connections > 1 ? ['--connections', String(connections)] : []));
  await waitFor(`${dev} to connect`, () => nbdConnected(dev) && nbdSectors(dev) > 0, 30_000);
  used.push(dev);
  return dev;
}

export async function nbdsnapLiveRestart(dir: string): Promise<void> {
  const daemon = await new NbdsnapDaemon(path.join(dir, 'daemon')).start();
  const devs: string[] = [];
  const mounts: string[] = [];
  const stop = path.join(dir, 'STOP');
  try {
    run('dmesg', ['-C']);
    daemon.cli('origin', 'add', 'lro', zeroFile(path.join(dir, 'origin.img'), 256 << 20));
    const dev0 = await attachCli(daemon, 'lro', devs, 2);
    run('mkfs.ext4', ['-q', '-F', dev0]);
    const m0 = freshDir(path.join(dir, 'mnt-origin'));
    run('mount', [dev0, m0]);
    mounts.push(m0);
    fs.writeFileSync(path.join(m0, 'before'), Buffer.alloc(1 << 20, 'b'));
    run('sync', []);
    run('fsfreeze', ['-f', m0]);
    try {
      daemon.cli('snapshot', 'create', 'lrs', '--origin', 'lro', '--size', '160M');
    } finally {
      run('fsfreeze', ['-u', m0]);
    }
    log('ext4 on the origin, snapshot taken while frozen');
    const dev1 = await attachCli(daemon, 'lrs', devs);
    const m1 = freshDir(path.join(dir, 'mnt-snap'));
    run('mount', [dev1, m1]);
    mounts.push(m1);
    const writers = [
      startWriter(m0, stop, path.join(dir, 'progress-origin')),
      startWriter(m1, stop, path.join(dir, 'progress-snap')),
    ];
    const advanced = async (from: number[], rounds: number, what: string) =>
      waitFor(what, () => {
        const stopped = writers.find((w) => !w.running());
        if (stopped) throw new Error(`a writer stopped while waiting for ${what}: ${stopped.stderr()}`);
        return writers.every((w, i) => w.progress() >= from[i] + rounds);
      }, 120_000, 50);
    await advanced([0, 0], 3, 'both writers to start');
    log(`writers running: ${writers.map((w) => w.progress()).join('/')} rounds`);
    const pauses: number[] = [];
    for (let i = 0; i < RESTARTS; i++) {
      const before = writers.map((w) => w.progress());
      const r = daemon.restartLive();
      if (r.connections !== 3 || r.closed !== 0) throw new Error(`restart ${i + 1}: ${r.connections} connections handed over, ${r.closed} closed; want 3 and 0`);
      pauses.push(r.pauseMs);
      log(`restart ${i + 1}: pid ${r.previousPid} -> ${r.pid}, pause ${r.pauseMs} ms, writers at ${writers.map((w) => w.progress()).join('/')}`);
      // Writing went on through the restart: each writer completes more rounds afterwards.
      await advanced(writers.map((w) => w.progress()), 1, `the writers to go on after restart ${i + 1}`);
      if (writers.some((w, k) => w.progress() === before[k])) throw new Error(`restart ${i + 1}: a writer made no progress`);
    }
    fs.writeFileSync(stop, '');
    const results = await Promise.all(writers.map((w) => w.done));
    const problems = results.flatMap((r, i) => (r.code === 0 ? [] : [`writer ${i}: exit ${r.code}: ${r.stderr.trim()}`]));
    const trouble = run('dmesg', []).stdout.split('\n').filter((l) => KERNEL_TROUBLE.test(l));
    if (trouble.length) problems.push(`kernel: ${trouble.slice(0, 5).join(' | ')}`);
    for (const m of mounts.splice(0).reverse()) run('umount', [m]);
    for (const d of devs) {
      const fsck = run('e2fsck', ['-fn', d], { allowFail: true });
      if (fsck.code !== 0) problems.push(`e2fsck ${d}: ${fsck.why}: ${fsck.stdout.trim().split('\n').slice(-3).join(' | ')}`);
    }
    if (problems.length) throw new Error(problems.join('; '));
    for (const d of devs.splice(0).reverse()) run(nbdsnapBin, ['detach', d]);
    log(`${RESTARTS} live restarts under ext4 writers on origin (2 connections) and snapshot: ${writers.map((w) => w.progress()).join('/')} verified rounds, ` +
      `no kernel errors, e2fsck clean; pause per restart ${Math.min(...pauses)}-${Math.max(...pauses)} ms`);
  } catch (err) {
    log(`daemon log: ${daemon.logTail(15)}`);
    throw err;
  } finally {
    fs.writeFileSync(stop, '');
    for (const m of mounts.reverse()) run('umount', ['-l', m], { allowFail: true });
    for (const d of devs) await nbdDetach(d).catch(() => undefined);
    await daemon.stop();
  }
}
