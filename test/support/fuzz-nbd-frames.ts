// Generators of NBD frames for the fuzzer: valid-looking handshakes (options with their length
// fields marked for the mutators) and transmission requests with hostile offsets and lengths.
// Bytes come from test/support/nbd-test-client.ts, never from src/nbd/codec.ts.
import { CMD, OPT, goData, metaData, option, request, u32 } from './nbd-test-client.ts';
import { randomBytes, type Field, type Frame } from './fuzz-mutate.ts';
import type { Rng } from './prng.ts';

const OPTION_HEADER = 16;
const MiB = 1024 * 1024;
export const MAX_PAYLOAD = 32 * MiB;

function optionFrame(opt: number, data: Buffer, inner: Field[] = []): Frame {
  const fields: Field[] = [{ at: 8, size: 4, kind: 'code' }, { at: 12, size: 4, kind: 'length' }];
  return { bytes: option(opt, data), fields: [...fields, ...inner.map((f) => ({ ...f, at: f.at + OPTION_HEADER }))] };
}

function exportNameFor(rng: Rng, name: string): string {
  return rng.pick([name, name, '', 'nope', 'x'.repeat(rng.int(1, 5000)), '\u00e9\u0000/..', name + '\n']);
}

function goFrame(rng: Rng, opt: number, name: string): Frame {
  const infos = Array.from({ length: rng.int(0, 5) }, () => rng.pick([0, 1, 2, 3, rng.int(0, 0xffff)]));
  const exportName = exportNameFor(rng, name);
  const nameLength = Buffer.byteLength(exportName);
  return optionFrame(opt, goData(exportName, infos), [
    { at: 0, size: 4, kind: 'length' },
    { at: 4 + nameLength, size: 2, kind: 'length' },
  ]);
}

function metaFrame(rng: Rng, opt: number, name: string): Frame {
  const queries = Array.from({ length: rng.int(0, 3) }, () => rng.pick(['base:allocation', 'base:', 'qemu:dirty', '', 'x'.repeat(rng.int(1, 4200))]));
  const exportName = exportNameFor(rng, name);
  const nameLength = Buffer.byteLength(exportName);
  return optionFrame(opt, metaData(exportName, queries), [
    { at: 0, size: 4, kind: 'length' },
    { at: 4 + nameLength, size: 4, kind: 'length' },
    { at: 8 + nameLength, size: 4, kind: 'length' },
  ]);
}

/** One option, valid or plausible. */
function randomOption(rng: Rng, name: string): Frame {
  switch (rng.int(0, 9)) {
    case 0: return optionFrame(OPT.STRUCTURED_REPLY, Buffer.alloc(0));
    case 1: return optionFrame(OPT.LIST, Buffer.alloc(0));
    case 2: return goFrame(rng, OPT.INFO, name);
    case 3: return metaFrame(rng, rng.pick([OPT.LIST_META, OPT.SET_META]), name);
    case 4: return optionFrame(OPT.STARTTLS, Buffer.alloc(0));
    case 5: return optionFrame(rng.int(11, 0xffffffff), randomBytes(rng, rng.int(0, 64)));
    case 6: return optionFrame(OPT.ABORT, Buffer.alloc(0));
    case 7: return optionFrame(OPT.EXPORT_NAME, Buffer.from(exportNameFor(rng, name)));
    default: return goFrame(rng, OPT.GO, name);
  }
}

/** Client flags then 1-8 options; the mutators may break any of it. */
export function handshakeFrames(rng: Rng, name: string): Frame[] {
  const flags = rng.chance(0.9) ? rng.pick([1, 3]) : rng.pick([0, 2, 4, 0x80000000, rng.int(0, 0xffffffff)]);
  const frames: Frame[] = [{ bytes: u32(flags), fields: [{ at: 0, size: 4, kind: 'flags' }] }];
  for (let n = rng.int(1, 8); n > 0; n--) frames.push(randomOption(rng, name));
  return frames;
}

/** Where requests aim: the scratch area (writes land only there unless mutated) or hostile values. */
export interface RequestSpace {
  size: number;
  scratchStart: number;
}

function randomOffset(rng: Rng, space: RequestSpace): bigint {
  if (rng.chance(0.75)) return BigInt(rng.int(space.scratchStart / 512, space.size / 512 - 1) * 512);
  return rng.pick([BigInt(space.size), BigInt(space.size - 512), BigInt(space.size + 1), 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 512n, 2n ** 53n]);
}

function randomLength(rng: Rng): number {
  if (rng.chance(0.7)) return rng.pick([512, 4096, 65536, 4096 * rng.int(1, 64)]);
  return rng.pick([0, 1, MiB, MAX_PAYLOAD, MAX_PAYLOAD + 1, 0xffffffff, rng.int(0, 0xffffffff)]);
}

function requestFields(): Field[] {
  return [
    { at: 4, size: 2, kind: 'flags' }, { at: 6, size: 2, kind: 'code' },
    { at: 16, size: 8, kind: 'offset' }, { at: 24, size: 4, kind: 'length' },
  ];
}

/** One request; a WRITE carries all, part or none of its payload. */
export function randomRequest(rng: Rng, space: RequestSpace): Frame {
  const type = rng.chance(0.9) ? rng.pick([CMD.READ, CMD.READ, CMD.WRITE, CMD.WRITE, CMD.FLUSH, CMD.TRIM, CMD.CACHE, CMD.WRITE_ZEROES, CMD.BLOCK_STATUS]) : rng.int(0, 0xffff);
  const flags = rng.chance(0.8) ? 0 : rng.pick([1, 2, 4, 8, 16, 32, 0x8000, rng.int(0, 0xffff)]);
  const offset = type === CMD.FLUSH && rng.chance(0.8) ? 0n : randomOffset(rng, space);
  const length = type === CMD.FLUSH && rng.chance(0.8) ? 0 : randomLength(rng);
  const magic = rng.chance(0.02) ? rng.int(0, 0xffffffff) : undefined;
  const cookie = BigInt(rng.int(0, 0xffffffff)) << BigInt(rng.int(0, 32));
  const head = request(type, { flags, cookie: cookie & (2n ** 64n - 1n), offset, length, magic });
  if (type !== CMD.WRITE) return { bytes: head, fields: requestFields() };
  const sent = length <= MiB && rng.chance(0.85) ? length : rng.int(0, Math.min(length, 256 * 1024));
  return { bytes: Buffer.concat([head, Buffer.alloc(sent, rng.int(0, 255))]), fields: requestFields() };
}

/** A burst of requests: mixed, or a pipelined flood of small READs. */
export function requestFrames(rng: Rng, space: RequestSpace): Frame[] {
  if (rng.chance(0.1)) {
    const read = (): Frame => ({ bytes: request(CMD.READ, { cookie: rng.int(0, 1e9), offset: BigInt(rng.int(0, space.size / 4096 - 1) * 4096), length: 4096 }), fields: requestFields() });
    return Array.from({ length: rng.int(50, 400) }, read);
  }
  return Array.from({ length: rng.int(1, 12) }, () => randomRequest(rng, space));
}
