// Shared by the live-restart e2e tests (daemon-restart, restart-tls): a daemon in a temp dir
// stopped with its whole chain of successors after each test, the clients' progress checks, and
// `nbdsnap restart --wait --json`.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { callDaemon } from '../../src/control/client.ts';
import type { Op, Request, RestartResult, ResultMap } from '../../src/control/api.ts';
import { processAlive, startDaemon, stopDaemonChain, tempDir, type DaemonHandle } from './daemon-harness.ts';
import type { VerifyingClient } from './restart-clients.ts';
import { waitFor } from './wait-for.ts';

/** Run after each test, last registered first: clients, daemons (with every successor), temp dirs. */
export const cleanups: (() => unknown)[] = [];

/** Register with afterEach(runCleanups) in each test file. */
export async function runCleanups(): Promise<void> {
  const errors: unknown[] = [];
  for (const fn of cleanups.splice(0).reverse()) await Promise.resolve().then(fn).catch((err: unknown) => errors.push(err));
  if (errors.length > 0) throw errors[0];
}

/** A request straight to the daemon (setup and queries; what is under test goes through the CLI). */
export function api<K extends Op>(d: DaemonHandle, req: Request<K>): Promise<ResultMap[K]> {
  return callDaemon(d.control, req);
}

/** A temp dir with a daemon on it (stopped, with every successor, after the test). */
export async function world(prefix: string, opts: { env?: Record<string, string>; args?: string[] } = {}): Promise<DaemonHandle> {
  const dir = tempDir(prefix);
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const d = await startDaemon(dir, opts);
  cleanups.push(() => stopDaemonChain(d, 'SIGTERM', 10_000));
  return d;
}

export function randomFile(file: string, size: number): Buffer {
  const data = crypto.randomBytes(size);
  fs.writeFileSync(file, data);
  return data;
}

export function clients(list: VerifyingClient[]): VerifyingClient[] {
  cleanups.push(() => list.forEach((c) => c.kill()));
  return list;
}

/** Fails, naming them, if any client has ended (or seen an error) already. */
export function expectAllRunning(list: VerifyingClient[], when: string): void {
  const ended = list.filter((c) => !c.running());
  if (ended.length > 0) {
    throw new Error(`${ended.map((c) => c.label).join(', ')} no longer running ${when}:\n${ended.map((c) => `--- ${c.label}\n${c.output()}`).join('\n')}`);
  }
}

/** Waits until every client that reports rounds has verified `n` more of them (proof it is served). */
export async function expectProgress(list: VerifyingClient[], n: number, what: string): Promise<void> {
  await waitFor(() => {
    expectAllRunning(list, what);
    return list.every((c) => c.started());
  }, `every client to start ${what}`, 90_000, 20);
  const base = list.map((c) => c.progress());
  const behind = () => list.filter((c, i) => !Number.isNaN(base[i]) && c.progress() < base[i] + n);
  try {
    await waitFor(() => {
      expectAllRunning(list, what);
      return behind().length === 0;
    }, `every client to verify ${n} more rounds ${what}`, 90_000, 20);
  } catch (err) {
    const late = behind().map((c) => `--- ${c.label}: ${c.progress()} rounds\n${c.output().slice(-3000)}`);
    throw new Error(`${(err as Error).message}\n${late.join('\n')}`);
  }
}

export async function totalConnections(d: DaemonHandle): Promise<number> {
  const origins = await api(d, { op: 'origin.list' });
  const snaps = await api(d, { op: 'snapshot.list' });
  return [...origins, ...snaps].reduce((n, x) => n + x.connections, 0);
}

/** Waits until the daemon counts `n` NBD connections in transmission, three times in a row. */
export async function expectConnections(d: DaemonHandle, n: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  let [seen, times] = [-1, 0];
  while (times < 3) {
    seen = await totalConnections(d);
    times = seen === n ? times + 1 : 0;
    if (Date.now() > deadline) throw new Error(`expected ${n} NBD connections, the daemon has ${seen}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `nbdsnap restart --wait --json`, which must succeed. */
export async function restartWait(d: DaemonHandle): Promise<RestartResult> {
  const r = await d.cli('restart', '--wait', '--json');
  if (r.code !== 0) throw new Error(`nbdsnap restart --wait failed (${r.code}): ${r.stderr}\n--- daemon log (end)\n${d.log().slice(-6000)}`);
  return JSON.parse(r.stdout);
}

/** Waits until process `pid` is gone (an old daemon exits once its last reply has left). */
export async function expectGone(pid: number): Promise<void> {
  await waitFor(() => !processAlive(pid), `pid ${pid} to exit`, 30_000, 20);
}

export function same(a: Buffer, b: Buffer, from: number, to: number): boolean {
  return a.subarray(from, to).equals(b.subarray(from, to));
}

/** Log lines (JSON) of `d` at level error or worse, from every process of its chain. */
export function errorLines(d: DaemonHandle): string[] {
  return d.log().split('\n').filter((l) => /"level":(50|60)/.test(l));
}
