// NBD clients that keep verifying their own writes for as long as a test wants (live restarts,
// issue 14): fio's nbd engine (libnbd, structured replies) with --verify=crc32c, qemu-io
// (structured replies) writing and reading patterns, and an nbdsh script with structured replies
// off. Each works on its own region of an export, runs until stop(), and stop() fails with the
// client's output unless it saw no error and verified what it wrote.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { run } from './exec.ts';

const KiB = 1024;
/** System tools first: nbdsh needs the Debian python3 with the nbd module. */
const SYSTEM_PATH = `/usr/bin:/usr/sbin:${process.env.PATH}`;
/** How long a client may take to answer stop() (finish, verify, exit). */
const STOP_TIMEOUT_MS = 120_000;

export interface ClientRegion {
  uri: string;
  /** Byte range of the export this client owns. */
  offset: number;
  length: number;
}

export interface VerifyingClient {
  readonly label: string;
  /** NBD connections it holds while running. */
  readonly connections: number;
  running(): boolean;
  /** Set up and working (fio: its region filled, the writer starting). */
  started(): boolean;
  /** Verified rounds so far (write + read back); fio: NaN (its iops log says when it wrote: ClientReport.lastWriteAt). */
  progress(): number;
  output(): string;
  /** Stop, wait for the exit, check it: resolves with what was verified, rejects with the output. */
  stop(): Promise<ClientReport>;
  /** Kill it without checking (cleanup after a failed test). */
  kill(): void;
}

export interface ClientReport {
  label: string;
  /** Bytes written, and bytes read back and compared. */
  writtenBytes: number;
  verifiedBytes: number;
  /** Per connection, the last time (epoch ms) it completed a write. */
  lastWriteAt: number[];
}

interface Proc {
  child: ChildProcess;
  exited: Promise<number | null>;
  isRunning(): boolean;
  /** SIGKILL to it and whatever it started (its own process group). */
  kill(): void;
  /** The start and the end of what it printed (stdout and stderr), for error messages. */
  text(): string;
}

/** Clients still running: killed when the test process exits, so a failed test leaks none. */
const live = new Set<Proc>();
process.once('exit', () => {
  for (const p of live) p.kill();
});

/** Output kept for error messages: the first and the last this many characters. */
const KEEP_CHARS = 16 * KiB;

function start(label: string, cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdin?: boolean; onLine?: (line: string) => void } = {}): Proc {
  // detached: a process group of its own, so that kill() also ends what it started (fio's fill).
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
  let head = '';
  let tail = '';
  let running = true;
  const keep = (b: Buffer | string): void => {
    if (head.length < KEEP_CHARS) head += String(b).slice(0, KEEP_CHARS - head.length);
    tail = (tail + String(b)).slice(-KEEP_CHARS);
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = '';
    stream.on('data', (b) => {
      keep(b);
      const lines = (partial + String(b)).split('\n');
      partial = lines.pop()!;
      for (const line of lines) opts.onLine?.(line);
    });
  }
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', (err) => {
      keep(`\n[${label}: ${err.message}]`);
      running = false;
      resolve(null);
    });
    child.on('close', (code) => {
      running = false;
      resolve(code);
    });
  });
  const text = () => (head.length < KEEP_CHARS ? head : `${head}\n[...]\n${tail}`);
  const kill = (): void => {
    if (!running || child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // the group is gone already: nothing to end
    }
  };
  const proc = { child, exited, isRunning: () => running, kill, text };
  live.add(proc);
  void exited.then(() => live.delete(proc));
  return proc;
}

async function exitWithin(p: Proc, label: string): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS)));
  const code = await Promise.race([p.exited, timeout]);
  clearTimeout(timer);
  if (code === 'timeout') {
    p.kill();
    throw new Error(`${label} did not finish within ${STOP_TIMEOUT_MS / 1000} s of being asked to stop:\n${p.text().slice(-4000)}`);
  }
  return code;
}

// ---------------------------------------------------------------------------------------------
// fio

export interface FioOptions extends ClientRegion {
  label: string;
  /** Work dir (fio writes its output, iops logs and verify state files here). */
  dir: string;
  /** Jobs, each one NBD connection on its own slice of the region (offset_increment). */
  numjobs: number;
  /**
   * Per-job write bandwidth cap (fio's --rate, e.g. '1m'), so that a 2-core machine keeps time for
   * the daemon. (--rate_iops with mixed block sizes throttles fio to a few IOPS.)
   */
  rate?: string;
}

/** Largest write fio issues; the inline verification may lag behind by verify_backlog of them. */
const FIO_MAX_BS = 64 * KiB;
const FIO_BACKLOG = 16;

function fioRegionArgs(o: FioOptions): string[] {
  const slice = o.length / o.numjobs;
  return [
    '--ioengine=nbd', `--uri=${o.uri}`, `--offset=${o.offset}`, `--size=${slice}`, `--offset_increment=${slice}`,
    `--numjobs=${o.numjobs}`, '--verify=crc32c', '--verify_interval=4k', '--verify_fatal=1', '--verify_state_save=0',
  ];
}

function shellQuote(args: string[]): string {
  return args.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
}

/**
 * fio random writes of 4-64 KiB (iodepth 8), each verified inline (verify_backlog) while it runs;
 * stopped through its trigger file, then the whole region is read and checked (every 4 KiB block
 * carries fio's header with its offset and a crc32c). The region is filled (and verified) first,
 * so that the final check finds a header in every block however little the writer ran.
 */
export function startFio(o: FioOptions): VerifyingClient {
  const stopFile = path.join(o.dir, `${o.label}.stop`);
  const readyFile = path.join(o.dir, `${o.label}.filled`);
  const outFile = path.join(o.dir, `${o.label}.json`);
  const logPrefix = path.join(o.dir, o.label);
  for (const f of [stopFile, readyFile]) fs.rmSync(f, { force: true });
  const fill = ['fio', `--name=${o.label}-fill`, ...fioRegionArgs(o), '--rw=write', '--bs=64k', '--iodepth=8', '--output-format=terse', '--output=/dev/null'];
  const writer = [
    'fio', `--name=${o.label}`, ...fioRegionArgs(o), '--rw=randwrite', `--bsrange=4k-${FIO_MAX_BS / KiB}k`, '--blockalign=4k',
    '--iodepth=8', `--verify_backlog=${FIO_BACKLOG}`, '--time_based', '--runtime=900', `--trigger-file=${stopFile}`,
    ...(o.rate ? [`--rate=${o.rate}`] : []),
    `--write_iops_log=${logPrefix}`, '--log_avg_msec=250', '--log_unix_epoch=1',
    '--output-format=json', `--output=${outFile}`,
  ];
  const p = start(o.label, 'sh', ['-c', `${shellQuote(fill)} && : > ${shellQuote([readyFile])} && exec ${shellQuote(writer)}`], { cwd: o.dir });
  return {
    label: o.label,
    connections: o.numjobs,
    running: p.isRunning,
    started: () => fs.existsSync(readyFile),
    progress: () => NaN,
    output: p.text,
    kill: p.kill,
    async stop() {
      fs.writeFileSync(stopFile, '');
      const code = await exitWithin(p, o.label);
      const text = fs.existsSync(outFile) ? fs.readFileSync(outFile, 'utf8') : '';
      if (code !== 0) throw new Error(`${o.label}: fio exited ${code}:\n${p.text()}\n${text.slice(0, 4000)}`);
      const jobs: { error: number; read: { io_bytes: number }; write: { io_bytes: number } }[] = JSON.parse(text.slice(text.indexOf('{'))).jobs;
      for (const [i, job] of jobs.entries()) {
        if (job.error !== 0) throw new Error(`${o.label} job ${i}: error ${job.error}\n${p.text()}`);
        if (job.write.io_bytes === 0) throw new Error(`${o.label} job ${i}: wrote nothing`);
        // Every write was read back and verified but the last verify_backlog ones (checked below).
        if (job.read.io_bytes < job.write.io_bytes - FIO_BACKLOG * FIO_MAX_BS) {
          throw new Error(`${o.label} job ${i}: verified ${job.read.io_bytes} of ${job.write.io_bytes} bytes written`);
        }
      }
      const check = await run('fio', [`--name=${o.label}-check`, ...fioRegionArgs(o), '--rw=read', '--bs=4k', '--iodepth=8', '--output-format=terse'], { timeoutMs: STOP_TIMEOUT_MS });
      if (check.code !== 0) throw new Error(`${o.label}: reading the region back failed verification:\n${check.stdout}${check.stderr}`);
      return {
        label: o.label,
        writtenBytes: jobs.reduce((n, j) => n + j.write.io_bytes, 0),
        verifiedBytes: jobs.reduce((n, j) => n + j.read.io_bytes, 0) + o.length,
        lastWriteAt: jobs.map((_, i) => lastWriteIn(`${logPrefix}_iops.${i + 1}.log`)),
      };
    },
  };
}

/** The last time (epoch ms, log_unix_epoch) a write completed, from a fio iops log. */
function lastWriteIn(file: string): number {
  let last = 0;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const [time, value, ddir] = line.split(',').map((f) => Number(f.trim()));
    if (ddir === 1 && value > 0) last = Math.max(last, time);
  }
  return last;
}

// ---------------------------------------------------------------------------------------------
// qemu-io

const QEMU_BLOCK = 64 * KiB;
/** Blocks written per round; as many other blocks are read meanwhile (both in flight at once). */
const QEMU_WRITES = 3;

/**
 * qemu-io (one connection, structured replies) in rounds: aio_write a fresh pattern to 3 blocks
 * while aio_read -P checks 3 others against their last pattern, then aio_read -P the 3 written.
 */
/** `image`: qemu-io's arguments naming the image (default: -f raw and the URI), e.g. TLS --image-opts. */
export function startQemuIo(o: ClientRegion & { label: string; image?: string[] }): VerifyingClient {
  const blocks = o.length / QEMU_BLOCK;
  const pattern = new Array<number>(blocks).fill(-1); // last pattern written to each block; -1: none yet
  let [wrote, read, rounds, written, verified, lastWriteAt] = [0, 0, 0, 0, 0, 0];
  let failure: string | undefined;
  let stopping = false;
  /** Called when a line arrives: the current round checks whether it is complete. */
  let wake = (): void => {};
  const p = start(o.label, 'stdbuf', ['-i0', '-oL', '-eL', 'qemu-io', ...(o.image ?? ['-f', 'raw', o.uri])], {
    stdin: true,
    onLine(line) {
      const text = line.replace(/^(qemu-io> )+/, '');
      if (text.startsWith('wrote ')) wrote++;
      else if (text.startsWith('read ')) read++;
      else if (/verification failed|failed|error/i.test(text)) failure ??= text;
      wake();
    },
  });
  const stdin = p.child.stdin!;
  stdin.on('error', () => {}); // qemu-io gone: its exit code and output say why
  void p.exited.then(() => wake());

  async function round(r: number): Promise<void> {
    const order = [...Array(blocks).keys()].sort(() => Math.random() - 0.5);
    const writes = order.slice(0, QEMU_WRITES);
    const reads = order.slice(QEMU_WRITES).filter((b) => pattern[b] >= 0).slice(0, QEMU_WRITES);
    const fresh = writes.map((_, i) => 1 + ((r * QEMU_WRITES + i) % 255));
    const at = (b: number) => `${o.offset + b * QEMU_BLOCK} ${QEMU_BLOCK}`;
    const cmds = [
      ...writes.map((b, i) => `aio_write -P ${fresh[i]} ${at(b)}`),
      ...reads.map((b) => `aio_read -P ${pattern[b]} ${at(b)}`),
      'aio_flush',
      ...writes.map((b, i) => `aio_read -P ${fresh[i]} ${at(b)}`),
      'aio_flush',
    ];
    const [wantWrote, wantRead] = [wrote + writes.length, read + reads.length + writes.length];
    const done = new Promise<void>((resolve) => {
      wake = () => {
        if (!p.isRunning() || failure || (wrote >= wantWrote && read >= wantRead)) resolve();
      };
    });
    stdin.write(cmds.join('\n') + '\n');
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<void>((resolve) => (timer = setTimeout(() => {
      failure ??= `round ${r} did not complete within 120 s`;
      resolve();
    }, 120_000)));
    await Promise.race([done, stalled]);
    clearTimeout(timer);
    if (!p.isRunning() || failure) return;
    lastWriteAt = Date.now();
    writes.forEach((b, i) => (pattern[b] = fresh[i]));
    written += writes.length * QEMU_BLOCK;
    verified += (reads.length + writes.length) * QEMU_BLOCK;
    rounds = r;
  }

  const loop = (async () => {
    for (let r = 1; !stopping && p.isRunning() && !failure; r++) await round(r);
  })();
  return {
    label: o.label,
    connections: 1,
    running: () => p.isRunning() && !failure,
    started: () => rounds > 0,
    progress: () => rounds,
    output: p.text,
    kill: p.kill,
    async stop() {
      stopping = true;
      await loop;
      stdin.end('quit\n');
      const code = await exitWithin(p, o.label);
      if (code !== 0 || failure) throw new Error(`${o.label}: qemu-io exited ${code}${failure ? `, saw "${failure}"` : ''}:\n${p.text()}`);
      return { label: o.label, writtenBytes: written, verifiedBytes: verified, lastWriteAt: [lastWriteAt] };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// nbdsh, structured replies off

const NBDSH_SCRIPT = String.raw`
import os, random, sys
uri, offset, length, stop = os.environ['RC_URI'], int(os.environ['RC_OFFSET']), int(os.environ['RC_LENGTH']), os.environ['RC_STOP']
bs, depth = 65536, 4
nblocks = length // bs
h.set_request_structured_replies(False)
if os.environ.get('RC_LOCAL_FILES') == '1':
    h.set_uri_allow_local_file(True)  # tls-psk-file in the URI
h.connect_uri(uri)
print('connected structured=%s' % h.get_structured_replies_negotiated(), flush=True)
if h.get_structured_replies_negotiated():
    sys.exit('structured replies were negotiated although not requested')
gen = [0] * nblocks
written = verified = 0

def content(b, g):
    head = ('%d:%d:%s;' % (b, g, os.environ['RC_SEED'])).encode()
    return (head * (bs // len(head) + 1))[:bs]

def run_batch(writes, reads):
    global written, verified
    cmds = []
    for b in writes:
        gen[b] += 1
        buf = nbd.Buffer.from_bytearray(bytearray(content(b, gen[b])))
        cmds.append((h.aio_pwrite(buf, offset + b * bs), None, b, buf))
    for b in reads:
        buf = nbd.Buffer(bs)
        cmds.append((h.aio_pread(buf, offset + b * bs), content(b, gen[b]), b, buf))
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for cookie, want, b, buf in cmds:
        h.aio_command_completed(cookie)  # raises on an error reply
        if want is None:
            written += bs
        elif bytes(buf.to_bytearray()) != want:
            sys.exit('MISMATCH block %d: expected generation %d, got %r' % (b, gen[b], bytes(buf.to_bytearray())[:40]))
        else:
            verified += bs

for first in range(0, nblocks, depth):
    run_batch(range(first, min(first + depth, nblocks)), [])
rounds = 0
while not os.path.exists(stop):
    picked = random.sample(range(nblocks), 2 * depth)
    run_batch(picked[:depth], picked[depth:])
    run_batch([], picked[:depth])
    rounds += 1
    if rounds % 8 == 0:
        h.flush()
    print('round %d' % rounds, flush=True)
for first in range(0, nblocks, depth):
    run_batch([], range(first, min(first + depth, nblocks)))
h.shutdown()
print('done written=%d verified=%d' % (written, verified), flush=True)
`;

/**
 * nbdsh (python libnbd) with structured replies off: writes distinct content (block, generation)
 * to 4 blocks while reading 4 others back, pipelined, then reads the 4 written; at the end reads
 * every block back.
 */
/** `localFiles`: let the URI name local files (tls-psk-file, tls-certificates). */
export function startNbdsh(o: ClientRegion & { label: string; dir: string; localFiles?: boolean }): VerifyingClient {
  const stopFile = path.join(o.dir, `${o.label}.stop`);
  const script = path.join(o.dir, `${o.label}.py`);
  fs.rmSync(stopFile, { force: true });
  fs.writeFileSync(script, NBDSH_SCRIPT);
  const env = {
    ...process.env, PATH: SYSTEM_PATH, LIBNBD_DEBUG: '0',
    RC_URI: o.uri, RC_OFFSET: String(o.offset), RC_LENGTH: String(o.length), RC_STOP: stopFile, RC_SEED: String(Math.random()),
    RC_LOCAL_FILES: o.localFiles ? '1' : '0',
  };
  let [rounds, lastWriteAt] = [0, 0];
  const p = start(o.label, '/usr/bin/nbdsh', ['-c', `exec(open(${JSON.stringify(script)}).read())`], {
    env,
    onLine(line) {
      const m = /^round (\d+)$/.exec(line);
      if (m) [rounds, lastWriteAt] = [Number(m[1]), Date.now()];
    },
  });
  const progress = () => rounds;
  return {
    label: o.label,
    connections: 1,
    running: p.isRunning,
    started: () => rounds > 0,
    progress,
    output: p.text,
    kill: p.kill,
    async stop() {
      fs.writeFileSync(stopFile, '');
      const code = await exitWithin(p, o.label);
      const done = /done written=(\d+) verified=(\d+)/.exec(p.text());
      if (code !== 0 || !done || !/connected structured=False/.test(p.text())) {
        throw new Error(`${o.label}: nbdsh exited ${code}:\n${p.text().slice(-4000)}`);
      }
      return { label: o.label, writtenBytes: Number(done[1]), verifiedBytes: Number(done[2]), lastWriteAt: [lastWriteAt] };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Connections that only check the daemon answers

/** An NBD connection that reads the greeting and then says nothing; `closed` settles when the server closes it. */
export async function stalledHandshake(nbdSocket: string): Promise<{ closed: Promise<void>; close(): void }> {
  const socket = net.connect(nbdSocket);
  socket.on('error', () => {}); // the server closing it is what is expected; `closed` reports it
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let got = 0;
    socket.on('data', (b) => (got += b.length) >= 18 && resolve());
    socket.once('close', () => reject(new Error('closed before the greeting')));
  });
  return { closed, close: () => socket.destroy() };
}

/**
 * Clients connecting in loops (4 and 2 at a time) to the NBD socket (until the greeting arrives)
 * and to the control socket (daemon.info, until its reply), checking both socket files exist
 * before each connect. Any error (ENOENT, ECONNREFUSED, a reset, no answer within 30 s) is a
 * failure; a control reply RESTARTING is an answer (the CLI sends such a request again).
 */
export function startProbes(nbdSocket: string, controlSocket: string) {
  const failures: string[] = [];
  const spans: [number, number][] = [];
  let [nbd, control, restarting] = [0, 0, 0];
  let running = true;
  /** One connection: resolves true once `done` says the answer is complete, false on a failure. */
  const once = (socketPath: string, send: string | null, done: (data: Buffer) => boolean): Promise<boolean> =>
    new Promise((resolve) => {
      if (!fs.existsSync(nbdSocket) || !fs.existsSync(controlSocket)) failures.push(`a socket file is missing at ${new Date().toISOString()}`);
      const from = Date.now();
      const socket = net.connect(socketPath);
      let got = Buffer.alloc(0);
      const timer = setTimeout(() => finish('no answer within 30 s'), 30_000);
      let settled = false;
      const finish = (err?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (err) failures.push(`${path.basename(socketPath)}: ${err} (connected at ${new Date(from).toISOString()}, failed at ${new Date().toISOString()})`);
        spans.push([from, Date.now()]);
        resolve(err === undefined);
      };
      socket.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
      socket.on('connect', () => send && socket.write(send));
      socket.on('data', (b) => {
        got = Buffer.concat([got, b]);
        if (done(got)) finish();
      });
      socket.on('end', () => finish(`closed after ${got.length} bytes`));
    });
  // Several at once, so that some arrive in every phase of a restart (held, forwarded, ...).
  const nbdLoops = Array.from({ length: 4 }, async () => {
    while (running) {
      if (await once(nbdSocket, null, (g) => g.length >= 18 && g.subarray(0, 16).toString('latin1') === 'NBDMAGICIHAVEOPT')) nbd++;
    }
  });
  const controlLoops = Array.from({ length: 2 }, async () => {
    while (running) {
      await once(controlSocket, '{"op":"daemon.info"}\n', (g) => {
        if (!g.includes(10)) return false;
        const reply = JSON.parse(g.toString('utf8'));
        if (reply.ok) control++;
        else if (reply.error?.code === 'RESTARTING') restarting++;
        else failures.push(`control: ${JSON.stringify(reply)}`);
        return true;
      });
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all([...nbdLoops, ...controlLoops]);
    },
    /** What the probes saw; `during`: probes that overlapped each of `windows` (restarts in progress). */
    report: (windows: [number, number][]) => ({
      failures, nbd, control, restarting,
      during: windows.map(([a, b]) => spans.filter(([from, to]) => from < b && to > a).length),
    }),
  };
}
