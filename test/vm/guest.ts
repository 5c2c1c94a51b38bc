// System helpers for the in-guest tests: running commands, loop devices, device-mapper tables,
// kernel nbd attach/detach, and the nbdsnap daemon/CLI (the contract of issue 6).
// Everything here expects to run as root inside the VM of scripts/vm/run.sh.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export const projectRoot = path.resolve(import.meta.dirname, '../..');
export const nbdsnapBin = path.join(projectRoot, 'bin/nbdsnap');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** "exit N", "killed by SIGTERM" or "timed out after S s" */
  why: string;
}

/** Runs a command to completion; throws with its stderr unless allowFail. */
export function run(cmd: string, args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): RunResult {
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  if (r.error && !timedOut) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  const why = timedOut ? `timed out after ${timeoutMs / 1000} s` : r.signal ? `killed by ${r.signal}` : `exit ${r.status}`;
  const res: RunResult = { code: r.status ?? 128, stdout: r.stdout ?? '', stderr: r.stderr ?? '', why };
  if (res.code !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')}: ${why}: ${(res.stderr || res.stdout).trim().split('\n').slice(-5).join(' | ')}`);
  }
  return res;
}

export async function waitFor(what: string, check: () => boolean, timeoutMs = 60_000, stepMs = 100): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

export function freshDir(dir: string): string {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** A zero-filled (sparse) file of `bytes`. */
export function zeroFile(file: string, bytes: number): string {
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  return file;
}

// ---- loop and device-mapper ---------------------------------------------------------------

export function loopAttach(file: string): string {
  return run('losetup', ['-f', '--show', file]).stdout.trim();
}

export function loopDetach(dev: string): void {
  run('losetup', ['-d', dev], { allowFail: true });
}

export function dmCreate(name: string, table: string): string {
  run('dmsetup', ['create', name, '--table', table]);
  return `/dev/mapper/${name}`;
}

export function dmRemove(name: string): void {
  if (run('dmsetup', ['info', name], { allowFail: true }).code !== 0) return;
  run('dmsetup', ['remove', '--retry', name]);
}

export function sectorsOf(file: string): number {
  return Math.floor(fs.statSync(file).size / 512);
}

// ---- kernel nbd ------------------------------------------------------------------------------

const nbdName = (dev: string): string => path.basename(dev);
export const nbdConnected = (dev: string): boolean => fs.existsSync(`/sys/block/${nbdName(dev)}/pid`);
export const nbdSectors = (dev: string): number => Number(fs.readFileSync(`/sys/block/${nbdName(dev)}/size`, 'utf8').trim());

/** Hands out /dev/nbdX that are not connected, lowest first. */
export function freeNbd(exclude: string[] = []): string {
  for (let i = 0; i < 16; i++) {
    const dev = `/dev/nbd${i}`;
    if (!exclude.includes(dev) && fs.existsSync(dev) && !nbdConnected(dev)) return dev;
  }
  throw new Error('no free /dev/nbdX (is the nbd module loaded with nbds_max=16?)');
}

export interface NbdAttachOptions {
  name?: string;
  blockSize?: number;
  connections?: number;
}

/** nbd-client -unix SOCK DEV [-N NAME] [-b BS] [-C N]; waits until the device has its size. */
export async function nbdAttach(sock: string, dev: string, o: NbdAttachOptions = {}): Promise<string> {
  const args = ['-unix', sock, dev];
  if (o.name !== undefined) args.push('-N', o.name);
  if (o.blockSize) args.push('-b', String(o.blockSize));
  if (o.connections && o.connections > 1) args.push('-C', String(o.connections));
  run('nbd-client', args);
  await waitFor(`${dev} to connect`, () => nbdConnected(dev) && nbdSectors(dev) > 0, 30_000);
  return dev;
}

export async function nbdDetach(dev: string): Promise<void> {
  if (!nbdConnected(dev)) return;
  run('nbd-client', ['-d', dev]);
  await waitFor(`${dev} to disconnect`, () => !nbdConnected(dev), 30_000);
}

// ---- nbdsnap daemon and CLI (contract of issue 6) -------------------------------------------

export class DaemonUnavailable extends Error {
  constructor(reason: string) {
    super(`nbdsnap daemon not available: ${reason}`);
  }
}

let availability: string | null | undefined;

/** null when `bin/nbdsnap daemon --help` works, else the reason (checked once). */
export function daemonUnavailableReason(): string | null {
  if (availability !== undefined) return availability;
  const r = run(nbdsnapBin, ['daemon', '--help'], { allowFail: true, timeoutMs: 120_000 });
  availability = r.code === 0 ? null : `'bin/nbdsnap daemon --help' exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`;
  return availability;
}

const liveDaemons = new Set<NbdsnapDaemon>();

/** Stops every daemon this process started and has not stopped yet. */
export async function stopAllDaemons(): Promise<void> {
  for (const d of [...liveDaemons]) await d.stop().catch(() => undefined);
}

export class NbdsnapDaemon {
  readonly nbdSocket: string;
  readonly control: string;
  readonly log: string;
  private child: ChildProcess | null = null;
  private exited: string | null = null;
  /** After a live restart: the pid now serving (the child we started has exited). */
  private successor: number | null = null;
  readonly dir: string;
  /** More `nbdsnap daemon` flags (--listen, --tls ...). */
  private readonly extraArgs: string[];
  /** More environment for the daemon (test hooks such as NBDSNAP_FAULT). */
  private readonly env: Record<string, string>;

  /** `dir` holds the data dir, sockets and log; it must not be shared with another daemon. */
  constructor(dir: string, extraArgs: string[] = [], env: Record<string, string> = {}) {
    this.dir = dir;
    this.extraArgs = extraArgs;
    this.env = env;
    fs.mkdirSync(dir, { recursive: true });
    this.nbdSocket = path.join(dir, 'nbd.sock');
    this.control = path.join(dir, 'control.sock');
    this.log = path.join(dir, 'daemon.log');
  }

  /** Starts `nbdsnap daemon` in the foreground (as a child) and waits for both sockets. */
  async start(): Promise<this> {
    const reason = daemonUnavailableReason();
    if (reason) throw new DaemonUnavailable(reason);
    const data = path.join(this.dir, 'data');
    fs.mkdirSync(data, { recursive: true });
    const log = fs.openSync(this.log, 'a');
    const child = spawn(nbdsnapBin, ['daemon', '--data-dir', data, '--socket', this.nbdSocket, '--control', this.control, ...this.extraArgs], {
      stdio: ['ignore', log, log],
      env: { ...process.env, ...this.env },
    });
    fs.closeSync(log);
    this.child = child;
    liveDaemons.add(this);
    child.on('exit', (code, signal) => {
      this.exited = signal ? `killed by ${signal}` : `exit ${code}`;
    });
    try {
      await waitFor('the daemon sockets', () => {
        if (this.exited) throw new DaemonUnavailable(`daemon ${this.exited} at start: ${this.logTail()}`);
        return fs.existsSync(this.control) && fs.existsSync(this.nbdSocket);
      }, 90_000, 200);
    } catch (err) {
      await this.stop();
      if (err instanceof DaemonUnavailable) throw err;
      throw new DaemonUnavailable(`${(err as Error).message}: ${this.logTail()}`);
    }
    return this;
  }

  logTail(lines = 5): string {
    try {
      return fs.readFileSync(this.log, 'utf8').trim().split('\n').slice(-lines).join(' | ');
    } catch {
      return '(no log)';
    }
  }

  /** bin/nbdsnap ARGS --control CTL; returns stdout. */
  cli(...args: string[]): string {
    const r = run(nbdsnapBin, [...args, '--control', this.control], { allowFail: true });
    if (r.code !== 0) {
      throw new Error(`nbdsnap ${args.join(' ')}: ${r.why}: ${(r.stderr || r.stdout).trim()}` +
        ` (daemon ${this.exited ?? 'running'}; its log ends: ${this.logTail(3)})`);
    }
    return r.stdout;
  }

  /** `nbdsnap restart --wait --json` (issue 14): the daemon's pid changes; stop() follows it. */
  restartLive(...args: string[]): { pid: number; previousPid: number; connections: number; closed: number; pauseMs: number } {
    const result = JSON.parse(this.cli('restart', '--wait', '--json', ...args));
    this.successor = result.pid;
    return result;
  }

  /** The pid serving now. */
  get pid(): number | undefined {
    return this.successor ?? this.child?.pid;
  }

  /** SIGTERM, then wait for the exit (SIGKILL after 60 s). */
  async stop(): Promise<void> {
    const successor = this.successor;
    if (successor !== null) {
      this.successor = null;
      await stopPid(successor);
    }
    const child = this.child;
    if (!child) return;
    this.child = null;
    liveDaemons.delete(this);
    if (this.exited === null) {
      child.kill('SIGTERM');
      try {
        await waitFor('the daemon to exit after SIGTERM', () => this.exited !== null, 60_000);
      } catch (err) {
        child.kill('SIGKILL');
        throw err;
      }
    }
  }

  get running(): boolean {
    return this.child !== null && this.exited === null;
  }
}

/** True while `pid` runs (a zombie, whose parent has exited and was not reaped yet, counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** SIGTERM a process we did not spawn ourselves (a live restart's successor) and wait until it is gone. */
export async function stopPid(pid: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  try {
    await waitFor(`pid ${pid} to exit after SIGTERM`, () => !alive(pid), 60_000);
  } catch (err) {
    process.kill(pid, 'SIGKILL');
    throw err;
  }
}

/** A progress line under the current test's RUN line. */
export function log(msg: string): void {
  process.stdout.write(`  ${msg}\n`);
}

/** Throws with every problem found, if any. */
export function fail(problems: string[]): void {
  if (problems.length > 0) throw new Error(problems.join('; '));
}

/** Throws DaemonUnavailable unless `bin/nbdsnap daemon` works. */
export function requireDaemon(): void {
  const reason = daemonUnavailableReason();
  if (reason) throw new DaemonUnavailable(reason);
}

/** Best-effort cleanup between tests: daemons, nbd, device-mapper and loop devices left behind. */
export async function resetDevices(): Promise<void> {
  await stopAllDaemons();
  for (let i = 0; i < 16; i++) {
    const dev = `/dev/nbd${i}`;
    if (fs.existsSync(dev) && nbdConnected(dev)) run('nbd-client', ['-d', dev], { allowFail: true });
  }
  run('dmsetup', ['remove_all', '--force'], { allowFail: true });
  run('losetup', ['-D'], { allowFail: true });
}
