// The transmission parser must produce the same items however the stream is cut, including
// byte by byte, and must skip (not buffer) the payload of a rejected WRITE.
import { describe, expect, it } from 'vitest';
import { ByteQueue } from './byte-queue.ts';
import { NbdError, ProtocolError } from './errno.ts';
import { RequestReader, type ReaderItem } from './request-reader.ts';
import { request } from '../../test/support/nbd-test-client.ts';

const payload = Buffer.from(Array.from({ length: 37 }, (_, i) => i + 1));
const stream = Buffer.concat([
  request(0, { cookie: 1, offset: 512, length: 1024 }),
  request(1, { cookie: 2, offset: 0, payload }),
  request(1, { cookie: 3, offset: 99, payload: Buffer.alloc(19, 0xee) }), // rejected below
  request(3, { cookie: 4 }),
  request(1, { cookie: 5, offset: 7, payload: Buffer.alloc(1, 0x42) }),
]);
const reject = (req: { cookie: bigint }) => (req.cookie === 3n ? new NbdError('ENOSPC', 'past the end') : undefined);

function summary(items: ReaderItem[]): unknown[] {
  return items.map((it) => [it.req.cookie, it.req.type, it.req.offset, it.req.length, it.payload ? [...it.payload] : undefined, it.error?.errno]);
}

function parse(pieces: Buffer[]): ReaderItem[] {
  const queue = new ByteQueue();
  const reader = new RequestReader(queue, reject);
  const items: ReaderItem[] = [];
  for (const piece of pieces) {
    queue.push(piece);
    for (let item = reader.next(); item; item = reader.next()) items.push(item);
  }
  expect(reader.midRequest).toBe(false);
  return items;
}

const expected = [
  [1n, 0, 512, 1024, undefined, undefined],
  [2n, 1, 0, 37, [...payload], undefined],
  [3n, 1, 99, 19, undefined, 'ENOSPC'],
  [4n, 3, 0, 0, undefined, undefined],
  [5n, 1, 7, 1, [0x42], undefined],
];

describe('RequestReader', () => {
  it('parses the whole stream in one piece', () => {
    expect(summary(parse([stream]))).toEqual(expected);
  });

  it('parses the stream cut at every single point', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(summary(parse([stream.subarray(0, cut), stream.subarray(cut)]))).toEqual(expected);
    }
  });

  it('parses the stream fed one byte at a time', () => {
    const bytes = [...stream].map((b) => Buffer.from([b]));
    expect(summary(parse(bytes))).toEqual(expected);
  });

  it('streams a large WRITE payload into one buffer, cut at many points and byte by byte', () => {
    const big = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 13) & 0xff));
    const bigStream = Buffer.concat([request(1, { cookie: 9, offset: 4096, payload: big }), request(3, { cookie: 10 })]);
    const want = [[9n, 1, 4096, big.length, [...big], undefined], [10n, 3, 0, 0, undefined, undefined]];
    for (let cut = 0; cut <= bigStream.length; cut += 997) {
      expect(summary(parse([bigStream.subarray(0, cut), bigStream.subarray(cut)]))).toEqual(want);
    }
    expect(summary(parse([...bigStream].map((b) => Buffer.from([b]))))).toEqual(want);
  });

  it('offers the rest of a large payload as a read target only while none of it is queued', () => {
    const big = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) & 0xff));
    const bytes = Buffer.concat([request(1, { cookie: 11, offset: 0, payload: big }), request(3, { cookie: 12 })]);
    const queue = new ByteQueue();
    const reader = new RequestReader(queue, () => undefined);
    expect(reader.payloadTarget()).toBeUndefined(); // no header yet
    queue.push(bytes.subarray(0, 28 + 1000)); // the header and 1,000 payload bytes
    expect(reader.next()).toBeUndefined();
    const target = reader.payloadTarget();
    expect(target?.length).toBe(big.length - 1000);
    queue.push(Buffer.alloc(1)); // a byte queued: the target would skip it
    expect(reader.payloadTarget()).toBeUndefined();
    queue.take(1);
    // The socket reads 30,000 bytes into the target, then the rest arrives queued with the next request.
    bytes.copy(target!, 0, 28 + 1000, 28 + 31_000);
    reader.payloadReceived(30_000);
    expect(reader.next()).toBeUndefined();
    expect(reader.payloadTarget()?.length).toBe(big.length - 31_000);
    queue.push(bytes.subarray(28 + 31_000));
    expect(summary([reader.next()!, reader.next()!])).toEqual([[11n, 1, 0, big.length, [...big], undefined], [12n, 3, 0, 0, undefined, undefined]]);
    expect(reader.payloadTarget()).toBeUndefined();
    expect(() => reader.payloadReceived(1)).toThrow(/without a payload/);
  });

  it('reports a partial request as midRequest', () => {
    const queue = new ByteQueue();
    const reader = new RequestReader(queue, () => undefined);
    queue.push(request(1, { payload }).subarray(0, 40));
    expect(reader.next()).toBeUndefined();
    expect(reader.midRequest).toBe(true);
  });

  it('throws ProtocolError on a bad magic', () => {
    const queue = new ByteQueue();
    queue.push(request(0, { magic: 0x12345678, length: 1 }));
    expect(() => new RequestReader(queue, () => undefined).next()).toThrow(ProtocolError);
  });
});
