import { describe, expect, it } from 'vitest';
import {
  areaLocation,
  decodeHeader,
  encodeHeader,
  exceptionsPerArea,
  scanArea,
  skipMetadataChunk,
  summarizeArea,
  writeRecord,
} from './format.ts';

// Expected bytes are written out by hand here, independent of the encoder.
describe('persistent format', () => {
  it('encodes the header as the kernel does: 16 bytes of fields, then a zeroed chunk', () => {
    const buf = encodeHeader(16, true);
    expect(buf.length).toBe(8192);
    expect([...buf.subarray(0, 16)]).toEqual([0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0]);
    expect(buf.subarray(16).every((b) => b === 0)).toBe(true);
    expect(decodeHeader(encodeHeader(8, false))).toEqual({ magic: 0x70416e53, valid: 0, version: 1, chunkSectors: 8 });
  });

  it('lays out areas as in the worked example (cs = 16)', () => {
    const epa = exceptionsPerArea(16);
    expect(epa).toBe(512);
    expect([0, 1, 2].map((a) => areaLocation(a, epa) * 8192)).toEqual([8192, 4_210_688, 8_413_184]);
    expect(skipMetadataChunk(513, epa)).toBe(513);
    expect(skipMetadataChunk(514, epa)).toBe(515);
    expect(skipMetadataChunk(1027, epa)).toBe(1028);
  });

  it('writes records little-endian, u64 fields, as in the worked example', () => {
    const area = Buffer.alloc(8192);
    writeRecord(area, 0, 62, 2);
    expect([...area.subarray(0, 16)]).toEqual([0x3e, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    writeRecord(area, 1, 2 ** 40 + 5, 2 ** 33 + 1);
    expect([...area.subarray(16, 32)]).toEqual([5, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
  });

  it('scans up to the first new_chunk == 0; old_chunk == 0 is a legal value', () => {
    const area = Buffer.alloc(512);
    writeRecord(area, 0, 0, 2);
    writeRecord(area, 1, 9, 2 ** 40);
    writeRecord(area, 3, 5, 5); // after the terminator at index 2: ignored
    const seen: [number, number][] = [];
    expect(scanArea(area, (o, n) => seen.push([o, n]))).toBe(2);
    expect(seen).toEqual([[0, 2], [9, 2 ** 40]]);
    expect(summarizeArea(area)).toEqual({ length: 2, maxNewChunk: 2 ** 40 });
    expect(summarizeArea(Buffer.alloc(512))).toEqual({ length: 0, maxNewChunk: -1 });
  });

  it('reports a full area (no terminator) as epa records', () => {
    const area = Buffer.alloc(512);
    for (let i = 0; i < 32; i++) writeRecord(area, i, i, i + 2);
    expect(scanArea(area, () => {})).toBe(32);
  });

  it('rejects fields that do not fit in a JS number', () => {
    const area = Buffer.alloc(512);
    area.writeUInt32LE(1, 8);
    area.writeUInt32LE(0x00200000, 12); // new_chunk = 2^53 + 1
    expect(() => scanArea(area, () => {})).toThrow(/exceeds 2\^53/);
    expect(() => summarizeArea(area)).toThrow(/exceeds 2\^53/);
    area.writeUInt32LE(0, 12);
    area.writeUInt32LE(0x00400000, 4); // old_chunk = 2^54
    expect(() => summarizeArea(area)).toThrow(/exceeds 2\^53/);
  });
});
