// Byte-level mutators for the fuzzers. A case is a list of frames; each frame knows where its
// numeric fields are, so a mutator can set "a length" or "an option code" to a hostile value
// instead of only flipping random bits.
import type { Rng } from './prng.ts';

/** A numeric big-endian field inside a frame. */
export interface Field {
  at: number;
  size: 2 | 4 | 8;
  kind: 'length' | 'code' | 'flags' | 'offset';
}

export interface Frame {
  bytes: Buffer;
  fields: Field[];
}

/** Values that break length/offset arithmetic: zero, off-by-one around limits, sign bits, all ones. */
const HOSTILE_U32 = [0, 1, 4095, 4096, 4097, 0xffff, 0x10000, 0x10001, 0x100000, 0x100001, 0x2000000, 0x2000001, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const HOSTILE_U64 = [0n, 1n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 512n, 2n ** 64n - 1n];

export function randomBytes(rng: Rng, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = rng.int(0, 255);
  return out;
}

function writeField(buf: Buffer, field: Field, value: bigint): void {
  const masked = value & ((1n << BigInt(field.size * 8)) - 1n);
  if (field.size === 8) buf.writeBigUInt64BE(masked, field.at);
  else if (field.size === 4) buf.writeUInt32BE(Number(masked), field.at);
  else buf.writeUInt16BE(Number(masked), field.at);
}

function hostileValue(rng: Rng, field: Field): bigint {
  if (field.kind === 'code' && rng.chance(0.5)) return BigInt(rng.int(0, 14));
  if (rng.chance(0.2)) return BigInt(rng.int(0, 0xffff)) * BigInt(rng.int(0, 0xffff));
  return field.size === 8 ? rng.pick(HOSTILE_U64) : BigInt(rng.pick(HOSTILE_U32));
}

/** Set one field of one frame to a hostile value (in place on a copy). */
function setField(rng: Rng, frames: Frame[]): Frame[] {
  const candidates = frames.flatMap((frame, index) => frame.fields.map((field) => ({ index, field })));
  if (candidates.length === 0) return frames;
  const { index, field } = rng.pick(candidates);
  const bytes = Buffer.from(frames[index].bytes);
  if (field.at + field.size <= bytes.length) writeField(bytes, field, hostileValue(rng, field));
  return frames.map((f, i) => (i === index ? { bytes, fields: f.fields } : f));
}

function repeatFrame(rng: Rng, frames: Frame[]): Frame[] {
  if (frames.length === 0) return frames;
  const at = rng.int(0, frames.length - 1);
  const copies = Array.from({ length: rng.int(2, 40) }, () => frames[at]);
  return [...frames.slice(0, at), ...copies, ...frames.slice(at + 1)];
}

function dropFrame(rng: Rng, frames: Frame[]): Frame[] {
  if (frames.length < 2) return frames;
  const at = rng.int(0, frames.length - 1);
  return [...frames.slice(0, at), ...frames.slice(at + 1)];
}

/** Structural mutations, then byte mutations on the joined buffer. */
export function mutateFrames(rng: Rng, frames: Frame[]): Buffer {
  let out = frames;
  for (let n = rng.int(0, 2); n > 0; n--) {
    out = rng.pick([setField, setField, repeatFrame, dropFrame])(rng, out);
  }
  return mutateBytes(rng, Buffer.concat(out.map((f) => f.bytes)));
}

/** Bit flips, truncation, random insertions; sometimes none. */
export function mutateBytes(rng: Rng, input: Buffer): Buffer {
  let buf = Buffer.from(input);
  if (rng.chance(0.3) && buf.length > 0) {
    for (let n = rng.int(1, 8); n > 0; n--) buf[rng.int(0, buf.length - 1)] ^= 1 << rng.int(0, 7);
  }
  if (rng.chance(0.15)) {
    const at = rng.int(0, buf.length);
    buf = Buffer.concat([buf.subarray(0, at), randomBytes(rng, rng.int(1, 64)), buf.subarray(at)]);
  }
  if (rng.chance(0.2)) buf = buf.subarray(0, rng.int(0, buf.length));
  return buf;
}
