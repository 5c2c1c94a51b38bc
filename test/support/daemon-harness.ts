// Runs the real daemon and CLI as child processes for end-to-end tests: a temp dir under /tmp per
// test, the CLI through bin/nbdsnap, data through the exports with nbdcopy and qemu-io.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { callDaemon } from '../../src/control/client.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/nbdsnap');

/** Daemons still running: killed when the test process exits, so a failed test leaks none. */
const live = new Set<ChildProcess>();
/** Data dirs of the daemons started here: a live restart's successors are found by these (see daemonPidsOf). */
const dataDirs = new Set<string>();
process.once('exit', () => {
  for (const proc of live) proc.kill('SIGKILL');
  for (const dataDir of dataDirs) for (const pid of daemonPidsOf(dataDir)) killQuietly(pid, 'SIGKILL');
});

export function tempDir(prefix = 'daemon-e2e-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface DaemonHandle {
  dir: string;
  dataDir: string;
  control: string;
  nbdSocket: string;
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  log(): string;
  /** Run the CLI against this daemon. */
  cli(...args: string[]): Promise<CliResult>;
  /** cli() that must succeed; returns parsed JSON when --json is among the args. */
  ok(...args: string[]): Promise<any>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Run bin/nbdsnap with `args`; env adds to (and may unset with undefined) the test's environment. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return run(BIN, args, env);
}

function run(cmd: string, args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => (stderr += b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function waitReady(control: string, exited: Promise<unknown>, log: () => string): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`daemon exited before it was ready:\n${log()}`);
    try {
      await callDaemon(control, { op: 'daemon.info' }, { connectTimeoutMs: 500 });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`daemon not ready after 20 s:\n${log()}`);
}

/** Start `nbdsnap daemon` on `dir`/data (created if needed) and wait until it answers. */
export async function startDaemon(dir: string, opts: { env?: Record<string, string>; args?: string[] } = {}): Promise<DaemonHandle> {
  const dataDir = path.join(dir, 'data');
  const control = path.join(dataDir, 'control.sock');
  const nbdSocket = path.join(dataDir, 'nbd.sock');
  const env = { ...process.env, NBDSNAP_FAULT: '', ...opts.env };
  const proc = spawn(process.execPath, [path.join(ROOT, 'src/cli/main.ts'), 'daemon', '--data-dir', dataDir, '--log-level', 'debug', ...(opts.args ?? [])], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  live.add(proc);
  dataDirs.add(dataDir);
  proc.once('exit', () => live.delete(proc));
  let logText = '';
  proc.stderr!.on('data', (b) => (logText += b));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const log = () => logText;
  try {
    await waitReady(control, exited, log);
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  const cli = (...args: string[]) => runCli([...args, '--control', control]);
  return {
    dir,
    dataDir,
    control,
    nbdSocket,
    proc,
    exited,
    log,
    cli,
    async ok(...args: string[]) {
      const r = await cli(...args);
      if (r.code !== 0) throw new Error(`nbdsnap ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
      return args.includes('--json') ? JSON.parse(r.stdout) : r.stdout;
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

export function nbdUri(d: DaemonHandle, name: string): string {
  return `nbd+unix:///${name}?socket=${d.nbdSocket}`;
}

/** Write `length` bytes of `pattern` at `offset` through the export (qemu-io, flushed on close). */
export async function writePattern(d: DaemonHandle, name: string, offset: number, length: number, pattern: number): Promise<void> {
  const r = await run('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} ${offset} ${length}`, '-c', 'flush', nbdUri(d, name)]);
  if (r.code !== 0 || /error|fail/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io write to ${name} failed: ${r.stdout}${r.stderr}`);
}

/** The whole export's content (nbdcopy to a temp file). */
export async function readExport(d: DaemonHandle, name: string): Promise<Buffer> {
  const out = path.join(d.dir, `read-${name}-${process.hrtime.bigint()}.img`);
  const r = await run('nbdcopy', [nbdUri(d, name), out]);
  if (r.code !== 0) throw new Error(`nbdcopy from ${name} failed: ${r.stderr}`);
  const data = fs.readFileSync(out);
  fs.rmSync(out);
  return data;
}

/** A buffer of `size` bytes with `runs` of [offset, length, byte] applied, as a model image. */
export function model(size: number, runs: [number, number, number][]): Buffer {
  const buf = Buffer.alloc(size);
  for (const [offset, length, byte] of runs) buf.fill(byte, offset, offset + length);
  return buf;
}

/** Hold an NBD connection to `name` open (an idle qemu-io) until close() is called. */
export async function holdConnection(d: DaemonHandle, name: string, kind: 'origin' | 'snapshot'): Promise<{ close(): Promise<void> }> {
  const client = spawn('qemu-io', ['-f', 'raw', nbdUri(d, name)], { stdio: ['pipe', 'ignore', 'ignore'] });
  const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const list: { name: string; connections: number }[] = await d.ok(kind, 'list', '--json');
    if ((list.find((x) => x.name === name)?.connections ?? 0) > 0) break;
    if (Date.now() > deadline) throw new Error(`no connection to ${name} after 10 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    async close() {
      client.stdin!.end();
      await closed;
    },
  };
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone: nothing to end
  }
}

/**
 * The processes serving `dataDir`: the daemon this harness started and, after a live restart,
 * the successors it spawned (`bin/nbdsnap daemon` with the same argv, so the same
 * `--data-dir DIR`). Each test's data dir is a fresh temp dir, so these are processes the test
 * started and no others.
 */
export function daemonPidsOf(dataDir: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // exited meanwhile
    }
    const at = argv.indexOf('--data-dir');
    if (at >= 0 && argv[at + 1] === dataDir && argv.includes('daemon')) pids.push(Number(entry));
  }
  return pids;
}

/** True while process `pid` exists (a zombie counts as gone). */
export function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The pid of the daemon answering on `d`'s control socket now (it changes with every live restart). */
export async function daemonPid(d: DaemonHandle): Promise<number> {
  return (await callDaemon(d.control, { op: 'daemon.info' })).pid;
}

/**
 * Stop whatever serves `d` now, after any number of live restarts: `signal` to every process of
 * its data dir, SIGKILL to any left after `graceMs`, and wait until all are gone. Returns the
 * pids that had to be killed (empty after a clean stop).
 */
export async function stopDaemonChain(d: DaemonHandle, signal: NodeJS.Signals = 'SIGTERM', graceMs = 20_000): Promise<number[]> {
  for (const pid of daemonPidsOf(d.dataDir)) killQuietly(pid, signal);
  const deadline = Date.now() + graceMs;
  let left = daemonPidsOf(d.dataDir);
  while (left.some(processAlive) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = daemonPidsOf(d.dataDir).filter(processAlive);
  }
  const killed = left.filter(processAlive);
  for (const pid of killed) killQuietly(pid, 'SIGKILL');
  while (daemonPidsOf(d.dataDir).some(processAlive)) await new Promise((r) => setTimeout(r, 20));
  return killed;
}
