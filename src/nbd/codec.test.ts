// Codec output checked against bytes written out by hand (and the independent frame builders
// in test/support), never against the codec itself.
import { describe, expect, it } from 'vitest';
import {
  decodeGoRequest, decodeMetaContextRequest, decodeOptionHeader, decodeRequest, encodeBlockStatusChunk, encodeErrorChunk,
  encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeMetaContextReply, encodeOptionReply,
  encodeServerReply, encodeSimpleReply, readReplyHeaderSize, writeReadReplyHeader,
} from './codec.ts';
import { goData, metaData, option, request, u16, u32 } from '../../test/support/nbd-test-client.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('handshake encoding', () => {
  it('greeting, option replies, EXPORT_NAME reply', () => {
    expect(encodeGreeting()).toEqual(hex('4e42444d41474943 49484156454f5054 0003'));
    expect(encodeOptionReply(7, 1)).toEqual(hex('0003e889045565a9 00000007 00000001 00000000'));
    expect(encodeOptionReply(3, 0x80000001, Buffer.from('no'))).toEqual(hex('0003e889045565a9 00000003 80000001 00000002 6e6f'));
    expect(encodeExportNameReply(0x1_0000_0200, 0x0d6d, true)).toEqual(hex('0000000100000200 0d6d'));
    const padded = encodeExportNameReply(512, 1, false);
    expect(padded.length).toBe(134);
    expect(padded.subarray(10).equals(Buffer.alloc(124))).toBe(true);
  });

  it('info, server and meta context payloads', () => {
    expect(encodeInfoExport(2 ** 40, 0x0ded)).toEqual(hex('0000 0000010000000000 0ded'));
    expect(encodeInfoBlockSize(1, 4096, 32 * 1024 * 1024)).toEqual(hex('0003 00000001 00001000 02000000'));
    expect(encodeServerReply('ab', 'd')).toEqual(hex('00000002 6162 64'));
    expect(encodeMetaContextReply(1, 'base:allocation')).toEqual(Buffer.concat([u32(1), Buffer.from('base:allocation')]));
  });
});

describe('handshake decoding', () => {
  it('option header', () => {
    expect(decodeOptionHeader(option(7, Buffer.alloc(9)))).toEqual({ magic: 0x49484156454f5054n, option: 7, length: 9 });
  });

  it('GO/INFO data, and every malformed variant', () => {
    expect(decodeGoRequest(goData('disk', [3, 1]), 4096)).toEqual({ name: 'disk', infos: [3, 1] });
    expect(decodeGoRequest(goData(''), 4096)).toEqual({ name: '', infos: [] });
    expect(decodeGoRequest(Buffer.from([0, 0, 0, 0, 0]), 4096)).toBeUndefined();
    expect(decodeGoRequest(Buffer.concat([u32(5), Buffer.from('disk'), u16(0)]), 4096)).toBeUndefined();
    expect(decodeGoRequest(Buffer.concat([u32(4), Buffer.from('disk'), u16(2), u16(1)]), 4096)).toBeUndefined();
    expect(decodeGoRequest(Buffer.concat([goData('disk', [1]), Buffer.from([0])]), 4096)).toBeUndefined();
    expect(decodeGoRequest(goData('x'.repeat(20)), 16)).toBeUndefined();
  });

  it('meta context data, and malformed variants', () => {
    expect(decodeMetaContextRequest(metaData('e', ['base:allocation', 'x:']), 4096)).toEqual({ exportName: 'e', queries: ['base:allocation', 'x:'] });
    expect(decodeMetaContextRequest(metaData('', []), 4096)).toEqual({ exportName: '', queries: [] });
    const good = metaData('e', ['abc']);
    for (let cut = 0; cut < good.length; cut++) expect(decodeMetaContextRequest(good.subarray(0, cut), 4096)).toBeUndefined();
    expect(decodeMetaContextRequest(Buffer.concat([u32(0), u32(1), u32(0xffffff), Buffer.from('a')]), 4096)).toBeUndefined();
  });
});

describe('transmission', () => {
  it('decodes a request header; offsets beyond 2^53 become Infinity', () => {
    const req = decodeRequest(request(1, { flags: 1, cookie: 0xfedcba9876543210n, offset: 2 ** 40 + 5, length: 4096 }));
    expect(req).toEqual({ magic: 0x25609513, flags: 1, type: 1, cookie: 0xfedcba9876543210n, offset: 2 ** 40 + 5, length: 4096 });
    expect(decodeRequest(request(0, { offset: 2n ** 53n })).offset).toBe(Infinity);
    expect(decodeRequest(request(0, { offset: 2n ** 53n - 1n })).offset).toBe(2 ** 53 - 1);
  });

  it('simple replies and read reply headers', () => {
    expect(encodeSimpleReply(22, 0x0102030405060708n)).toEqual(hex('67446698 00000016 0102030405060708'));
    const simple = Buffer.alloc(readReplyHeaderSize(false) + 2);
    writeReadReplyHeader(simple, false, 9n, 100, 2);
    expect(simple).toEqual(hex('67446698 00000000 0000000000000009 0000'));
    const chunk = Buffer.alloc(readReplyHeaderSize(true) + 2);
    writeReadReplyHeader(chunk, true, 9n, 100, 2);
    expect(chunk).toEqual(hex('668e33ef 0001 0001 0000000000000009 0000000a 0000000000000064 0000'));
  });

  it('error and block status chunks', () => {
    expect(encodeErrorChunk(3n, 5, 'bad')).toEqual(hex('668e33ef 0001 8001 0000000000000003 00000009 00000005 0003 626164'));
    expect(encodeBlockStatusChunk(4n, true, 1, [{ length: 512, flags: 3 }, { length: 4096, flags: 0 }])).toEqual(
      hex('668e33ef 0001 0005 0000000000000004 00000014 00000001 00000200 00000003 00001000 00000000'),
    );
  });
});
