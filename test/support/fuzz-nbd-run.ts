// Plays fuzz cases against a server socket: connect, send the bytes in random pieces, drain
// whatever comes back, and leave in one of several rude ways (destroy mid-stream, half-close,
// or wait for the server to hang up). A case never asserts on replies; the campaign checks the
// server afterwards.
import net from 'node:net';
import type { Rng } from './prng.ts';

export interface FuzzCase {
  bytes: Buffer;
  /** Destroy the socket after sending this many bytes (an abrupt close mid-stream). */
  cutAt?: number;
  /** After sending: 'destroy' at once, 'end' (half-close) and wait, or 'linger' until the server closes. */
  leave: 'destroy' | 'end' | 'linger';
  /** How long to wait for the server after sending, in ms. */
  lingerMs: number;
}

export function planCase(rng: Rng, bytes: Buffer): FuzzCase {
  const cutAt = rng.chance(0.15) ? rng.int(0, bytes.length) : undefined;
  return { bytes, cutAt, leave: rng.pick(['destroy', 'end', 'linger', 'linger']), lingerMs: rng.int(0, 30) };
}

/** A server that neither reads nor closes for this long is left behind (the checks will notice). */
const SEND_TIMEOUT_MS = 10_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Write `bytes` in 1-4 pieces, each after the previous one was handed to the kernel. */
async function sendInPieces(socket: net.Socket, bytes: Buffer, rng: Rng): Promise<void> {
  const cuts = Array.from({ length: rng.int(0, 3) }, () => rng.int(0, bytes.length)).sort((a, b) => a - b);
  let from = 0;
  for (const to of [...cuts, bytes.length]) {
    if (socket.destroyed) return;
    const piece = bytes.subarray(from, to);
    from = to;
    if (piece.length === 0) continue;
    await new Promise<void>((resolve) => socket.write(piece, () => resolve()));
  }
}

/** Run one case; resolves when the connection is gone (never rejects). */
export async function runCase(socketPath: string, c: FuzzCase, rng: Rng): Promise<void> {
  const socket = net.connect(socketPath);
  socket.on('error', () => {}); // resets and EPIPE are expected: the server may hang up on us
  socket.on('data', () => {}); // drain replies so the server never blocks on us
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const connected = await Promise.race([
    new Promise<boolean>((resolve) => socket.once('connect', () => resolve(true))),
    closed.then(() => false),
  ]);
  if (!connected) return;
  const bytes = c.cutAt === undefined ? c.bytes : c.bytes.subarray(0, c.cutAt);
  await Promise.race([sendInPieces(socket, bytes, rng), closed, sleep(SEND_TIMEOUT_MS)]);
  if (c.cutAt !== undefined || c.leave === 'destroy') socket.destroy();
  else if (c.leave === 'end') socket.end();
  await Promise.race([closed, sleep(c.lingerMs)]);
  socket.destroy();
  await closed;
}

/** Run `cases` with at most `parallel` connections at a time. */
export async function runCases(socketPath: string, cases: FuzzCase[], rng: Rng, parallel: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cases.length) await runCase(socketPath, cases[next++], rng);
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}
