// The running daemon's side of a live restart (`nbdsnap restart`, `systemctl reload`): start a
// successor from the code installed now (bin/nbdsnap, same arguments, same environment), and
// once it has loaded, give it the listeners and every connection. Daemon.restart() drives it:
//   spawn -> 'loaded' -> (old daemon pauses its connections, closes stores, catalog and lock)
//   -> handles + 'go' -> (successor opens everything, listens) 'ready' -> 'commit' (successor
//   reads the paused connections from here on) -> connections accepted since go to the
//   successor; old daemon exits.
// Any failure before 'ready' (exit, 'failed', timeout) kills the successor; the old daemon then
// opens everything again and resumes its connections, which never left it: handles are sent
// with keepOpen, and the successor reads from none of them before 'go'.
import { spawn, type ChildProcess } from 'node:child_process';
import type net from 'node:net';
import path from 'node:path';
import { rawHandle, type RawHandle } from '../common/accept-gate.ts';
import type { Logger } from '../log.ts';
import type { NbdHandover } from '../nbd/server.ts';
import type { CarriedTransient } from '../store/transient-store.ts';
import { SUCCESSOR_ENV, type FromSuccessor, type ToSuccessor } from './handover-protocol.ts';

/** How long a successor may take to load, and then to serve after 'go', unless the request says. */
export const DEFAULT_RESTART_TIMEOUT_MS = 120_000;

const LAUNCHER = path.resolve(import.meta.dirname, '../../bin/nbdsnap');

export class RestartFailed extends Error {}

/** What lives only in the daemon's memory and must survive a restart. */
export interface CarriedState {
  transients: Map<string, CarriedTransient>;
  overflowed: Set<string>;
}

/** What the old daemon gives its successor besides the NBD side. */
export interface ControlHandover {
  listener: RawHandle | undefined;
  path: string;
  fresh: net.Socket[];
}

export class Successor {
  readonly pid: number;
  private readonly child: ChildProcess;
  private readonly log: Logger;
  /** Settles with the reason the successor is unusable (exit, 'failed'), never resolves otherwise. */
  private readonly gone: Promise<string>;
  private readonly waiters = new Map<FromSuccessor['type'], () => void>();
  private sending = Promise.resolve();
  private unsent = 0;
  /** 'commit' is sent: nothing sent from now on can come back here. */
  private committed = false;

  private constructor(child: ChildProcess, log: Logger) {
    this.child = child;
    this.pid = child.pid!;
    this.log = log;
    this.gone = new Promise((resolve) => {
      child.once('error', (err) => resolve(`cannot start ${LAUNCHER}: ${err.message}`));
      child.once('exit', (code, signal) => resolve(`it exited (${signal ?? `code ${code}`}) before serving`));
      child.on('message', (msg: FromSuccessor) => {
        if (msg.type === 'failed') resolve(msg.reason);
        else this.waiters.get(msg.type)?.();
      });
    });
  }

  /** Start `bin/nbdsnap` with this daemon's arguments; resolves once its code has loaded. */
  static async start(log: Logger, timeoutMs: number): Promise<Successor> {
    const child = spawn(LAUNCHER, process.argv.slice(2), {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, [SUCCESSOR_ENV]: '1' },
    });
    const successor = new Successor(child, log);
    await successor.expect('loaded', timeoutMs, 'load');
    return successor;
  }

  /** Send everything and 'go'; resolves once the successor serves. */
  async handOver(nbd: NbdHandover, control: ControlHandover, carried: CarriedState, timeoutMs: number): Promise<void> {
    const { transients, overflowed } = carried;
    if (overflowed.size > 0) this.send({ type: 'overflowed', names: [...overflowed] });
    for (const [name, t] of transients) {
      const exceptions = Buffer.from(t.exceptions.buffer, t.exceptions.byteOffset, t.exceptions.byteLength).toString('base64');
      this.send({ type: 'transient', name, nextFreeSector: t.nextFreeSector, invalid: t.invalid, exceptions });
    }
    for (const l of nbd.listeners) this.send({ type: 'listener', kind: 'nbd', unixPath: l.unixPath }, l.handle);
    if (control.listener) this.send({ type: 'listener', kind: 'control', unixPath: control.path }, control.listener);
    for (const c of nbd.connections) this.send({ type: 'connection', state: c.state, rest: c.rest.toString('base64') }, c.handle);
    for (const s of nbd.fresh) this.sendFresh('nbd', s);
    for (const s of control.fresh) this.sendFresh('control', s);
    this.send({ type: 'go' });
    await this.expect('ready', timeoutMs, 'serve');
    this.send({ type: 'commit' });
    this.committed = true;
  }

  /** Give the successor a connection accepted here and never read (after 'commit', this process's copy is closed). */
  sendFresh(kind: 'nbd' | 'control', socket: net.Socket): void {
    const handle = rawHandle(socket);
    if (handle) this.send({ type: 'fresh', kind }, handle);
  }

  /**
   * Resolves once every message sent has been delivered, including those queued while waiting
   * (connections this daemon still accepts and forwards). The caller exits in the same tick.
   */
  async delivered(): Promise<void> {
    while (this.unsent > 0) await this.sending;
  }

  /** Close the IPC channel (a previous daemon staying to relay TLS connections has nothing more to send). */
  disconnect(): void {
    if (this.child.connected) this.child.disconnect();
  }

  /** Give up on it: SIGKILL, and wait for it to be gone (it may hold the data dir's lock). */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGKILL');
      await exited;
    }
  }

  private send(msg: ToSuccessor, handle?: RawHandle): void {
    this.unsent++;
    this.sending = this.sending.then(() => new Promise<void>((resolve) => {
      const done = (): void => {
        this.unsent--;
        resolve();
      };
      if (!this.child.connected) return done();
      // keepOpen: until the successor serves, this daemon may have to take the connection back.
      this.child.send(msg, handle as net.Socket | undefined, { keepOpen: !this.committed }, (err) => {
        if (err) this.log.warn({ err, message: msg.type }, 'handing a socket to the successor failed');
        done();
      });
    }));
  }

  private async expect(type: FromSuccessor['type'], timeoutMs: number, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const arrived = new Promise<void>((resolve) => this.waiters.set(type, resolve));
    const timedOut = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`it did not ${what} within ${timeoutMs / 1000} s`), timeoutMs)));
    try {
      const reason = await Promise.race([arrived, this.gone, timedOut]);
      if (typeof reason === 'string') throw new RestartFailed(`the successor (pid ${this.pid}) failed: ${reason}`);
    } finally {
      clearTimeout(timer);
      this.waiters.delete(type);
    }
  }
}
