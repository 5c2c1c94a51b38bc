// Run the real `bin/nbdsnap serve` on a temp Unix socket and wait until it accepts connections.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
export const NBDSNAP = path.join(REPO_ROOT, 'bin/nbdsnap');

export interface ServeProcess {
  dir: string;
  socket: string;
  /** nbd+unix URI of the default export (or of `name`). */
  uri(name?: string): string;
  proc: ChildProcess;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** The first match of `pattern` in stderr, once it is there (rejects if the server exits first or after timeoutMs). */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Send a signal (unless one was sent already) and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function makeTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'nbdsrv-'));
}

/** Create a file of `size` bytes in `dir`, optionally filled by `fill`. */
export function makeImage(dir: string, size: number, name = 'disk.img', fill?: Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, fill ?? Buffer.alloc(0));
  fs.truncateSync(file, size);
  return file;
}

function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function waitForSocket(socket: string, proc: ChildProcess, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}`);
    if (fs.existsSync(socket) && (await canConnect(socket))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server socket ${socket} did not appear`);
}

export interface ServeArgs {
  image: string;
  dir?: string;
  socket?: string;
  name?: string;
  readOnly?: boolean;
  extra?: string[];
  env?: Record<string, string>;
}

/** Servers still running; killed when the test worker exits, so a failed test leaks none. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const proc of live) proc.kill('SIGKILL');
});

export async function startServe(args: ServeArgs): Promise<ServeProcess> {
  const dir = args.dir ?? path.dirname(args.image);
  const socket = args.socket ?? path.join(dir, 'nbd.sock');
  const argv = ['serve', args.image, '--socket', socket, ...(args.name ? ['--name', args.name] : []), ...(args.readOnly ? ['--read-only'] : []), ...(args.extra ?? [])];
  const proc = spawn(NBDSNAP, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NBDSNAP_LOG_LEVEL: 'debug', ...args.env } });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  proc.stdout!.on('data', (d: Buffer) => (err += `[stdout] ${d.toString()}`));
  live.add(proc);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
    }),
  );
  await waitForSocket(socket, proc);
  const waitForStderr = (pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      stop();
      reject(new Error(`no ${pattern} on the server's stderr: ${why}\n${err}`));
    };
    const look = (): boolean => {
      const match = pattern.exec(err);
      if (match) {
        stop();
        resolve(match);
      }
      return !!match;
    };
    const closed = (): void => {
      if (!look()) fail('it exited');
    };
    const timer = setTimeout(() => fail(`not within ${timeoutMs} ms`), timeoutMs);
    const stop = (): void => {
      clearTimeout(timer);
      proc.stderr!.off('data', look); // registered after the listener that collects `err`
      proc.off('close', closed);
    };
    proc.stderr!.on('data', look);
    proc.once('close', closed);
    look();
  });
  return {
    dir, socket, proc,
    uri: (name = '') => `nbd+unix:///${name}?socket=${socket}`,
    stderr: () => err,
    waitForStderr,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null && !proc.killed) proc.kill(signal);
      return exited;
    },
  };
}
