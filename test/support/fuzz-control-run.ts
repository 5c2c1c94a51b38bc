// Runs control-API fuzz lines against a daemon and checks every reply's shape: one JSON line per
// non-blank request line, in order, either {ok: true, result} or {ok: false, error: {code,
// message}} with a documented code. Successful creates and removes are tallied so the test can
// compare the catalog with what was really accepted.
import net from 'node:net';
import { ERROR_CODES } from '../../src/control/api.ts';
import { controlLine, type ControlFuzzEnv } from './fuzz-control-gen.ts';
import type { Rng } from './prng.ts';

export interface Tally {
  lines: number;
  ok: number;
  refused: Record<string, number>;
  /** Names created (+) and removed (-) by successful requests, in the order the replies arrived. */
  events: { at: bigint; name: string; created: boolean }[];
}

export function newTally(): Tally {
  return { lines: 0, ok: 0, refused: {}, events: [] };
}

/** The names the catalog should hold: `initial`, then every event in arrival order. */
export function expectedNames(initial: string[], tally: Tally): string[] {
  const names = new Set(initial);
  for (const e of [...tally.events].sort((a, b) => (a.at < b.at ? -1 : 1))) {
    if (e.created) names.add(e.name);
    else names.delete(e.name);
  }
  return [...names].sort();
}

interface ReplyLine {
  text: string;
  /** process.hrtime.bigint() when its last byte arrived. */
  at: bigint;
}

/** Send `lines` on one connection; resolves with the reply lines (the socket closes after the last). */
export function exchange(socketPath: string, lines: Buffer[], expected: number, timeoutMs = 10_000): Promise<ReplyLine[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let text = '';
    const arrivals: bigint[] = [];
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(text.split('\n').slice(0, arrivals.length).map((line, i) => ({ text: line, at: arrivals[i] })));
    };
    const timer = setTimeout(() => finish(new Error(`no ${expected} replies within ${timeoutMs} ms: ${JSON.stringify(text.slice(0, 300))}`)), timeoutMs);
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish());
    socket.on('data', (d) => {
      text += d.toString('utf8');
      const now = process.hrtime.bigint();
      while (arrivals.length < text.split('\n').length - 1) arrivals.push(now);
      if (arrivals.length >= expected) finish();
    });
    socket.once('connect', () => {
      if (expected === 0) return finish();
      socket.write(Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])));
    });
  });
}

/** Throws unless `line` is a well-formed reply; tallies it. */
export function checkReply({ text: line, at }: ReplyLine, request: Buffer, tally: Tally): void {
  const reply = JSON.parse(line) as { ok?: unknown; result?: { name?: string; removed?: string[] }; error?: { code?: unknown; message?: unknown } };
  const context = `reply ${line.slice(0, 200)} to ${JSON.stringify(request.toString('utf8').slice(0, 200))}`;
  if (reply.ok === true) {
    if (!('result' in reply)) throw new Error(`ok without result: ${context}`);
    tally.ok++;
    const op = (JSON.parse(request.toString('utf8')) as { op: string }).op;
    if (op === 'origin.add' || op === 'snapshot.create') tally.events.push({ at, name: reply.result!.name!, created: true });
    if (op.endsWith('.remove')) tally.events.push(...reply.result!.removed!.map((name) => ({ at, name, created: false })));
    return;
  }
  const { code, message } = reply.error ?? {};
  if (reply.ok !== false || !ERROR_CODES.includes(code as never) || typeof message !== 'string' || message === '') {
    throw new Error(`malformed ${context}`);
  }
  if (code === 'INTERNAL') throw new Error(`INTERNAL error (a handler threw something unexpected): ${context}`);
  tally.refused[code as string] = (tally.refused[code as string] ?? 0) + 1;
}

/** One connection with 1-8 fuzz lines; every non-blank line must get one well-formed reply. */
export async function fuzzConnection(socketPath: string, env: ControlFuzzEnv, rng: Rng, tally: Tally): Promise<void> {
  const lines = Array.from({ length: rng.int(1, 8) }, () => controlLine(env, rng));
  const answered = lines.filter((l) => l.toString('utf8').trim() !== '');
  const replies = await exchange(socketPath, lines, answered.length);
  if (replies.length !== answered.length) throw new Error(`${answered.length} requests got ${replies.length} replies`);
  replies.forEach((reply, i) => checkReply(reply, answered[i], tally));
  tally.lines += lines.length;
}
