import { describe, expect, it } from 'vitest';
import { clipExtents } from './commands.ts';
import { decodeRequest } from './codec.ts';
import { validateRequest, type ValidationContext } from './validate.ts';
import { CMD, FLAG, request } from '../../test/support/nbd-test-client.ts';

const RW = 0x1 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800; // every flag but READ_ONLY/ROTATIONAL
const ctx: ValidationContext = { size: 1 << 20, flags: RW, metaContext: true, maxPayload: 1 << 16 };
const roCtx: ValidationContext = { ...ctx, flags: 0x1 | 0x2 | 0x100 | 0x400 };

function check(type: number, o: Parameters<typeof request>[1], c = ctx): string | undefined {
  return validateRequest(decodeRequest(request(type, { ...o, payload: undefined })), c)?.errno;
}

describe('validateRequest', () => {
  it.each([
    ['valid READ', CMD.READ, { offset: 0, length: 4096 }, undefined],
    ['READ past the end', CMD.READ, { offset: (1 << 20) - 1, length: 2 }, 'EINVAL'],
    ['READ above maxPayload', CMD.READ, { length: (1 << 16) + 1 }, 'EINVAL'],
    ['zero-length READ', CMD.READ, { length: 0 }, 'EINVAL'],
    ['WRITE past the end', CMD.WRITE, { offset: 1 << 20, length: 1 }, 'ENOSPC'],
    ['WRITE_ZEROES past the end', CMD.WRITE_ZEROES, { offset: 1 << 20, length: 1 }, 'ENOSPC'],
    ['TRIM past the end', CMD.TRIM, { offset: 1 << 20, length: 1 }, 'EINVAL'],
    ['offset above 2^64 - length', CMD.WRITE, { offset: 2n ** 64n - 1n, length: 2 }, 'ENOSPC'],
    ['FLUSH with a length', CMD.FLUSH, { length: 1 }, 'EINVAL'],
    ['FLUSH with FUA', CMD.FLUSH, { flags: FLAG.FUA }, undefined],
    ['NO_HOLE on WRITE', CMD.WRITE, { flags: FLAG.NO_HOLE, length: 1 }, 'EINVAL'],
    ['FAST_ZERO on WRITE_ZEROES', CMD.WRITE_ZEROES, { flags: FLAG.FAST_ZERO | FLAG.NO_HOLE, length: 1 }, undefined],
    ['REQ_ONE on BLOCK_STATUS', CMD.BLOCK_STATUS, { flags: FLAG.REQ_ONE, length: 1 }, undefined],
    ['REQ_ONE on READ', CMD.READ, { flags: FLAG.REQ_ONE, length: 1 }, 'EINVAL'],
    ['unknown command', 9, {}, 'EINVAL'],
    ['DISC with junk', CMD.DISC, { flags: 0xffff, length: 5 }, undefined],
  ] as const)('%s', (_name, type, o, errno) => {
    expect(check(type, o)).toBe(errno);
  });

  it('read-only exports refuse write-type commands with EPERM and unadvertised ones with EINVAL', () => {
    expect(check(CMD.WRITE, { length: 1 }, roCtx)).toBe('EPERM');
    expect(check(CMD.TRIM, { length: 1 }, roCtx)).toBe('EPERM');
    expect(check(CMD.WRITE_ZEROES, { length: 1 }, roCtx)).toBe('EPERM');
    expect(check(CMD.FLUSH, {}, roCtx)).toBe('EINVAL');
    expect(check(CMD.READ, { flags: FLAG.FUA, length: 1 }, roCtx)).toBe('EINVAL');
    expect(check(CMD.READ, { flags: FLAG.DF, length: 1 }, roCtx)).toBe('EINVAL');
    expect(check(CMD.CACHE, { length: 1 }, roCtx)).toBeUndefined();
  });

  it('BLOCK_STATUS needs a selected context', () => {
    expect(check(CMD.BLOCK_STATUS, { length: 1 }, { ...ctx, metaContext: false })).toBe('EINVAL');
  });
});

describe('clipExtents', () => {
  it('clips to the request, merges equal neighbours, drops empty extents', () => {
    const extents = [{ length: 0, flags: 0 }, { length: 100, flags: 0 }, { length: 50, flags: 0 }, { length: 1000, flags: 3 }];
    expect(clipExtents(extents, 400, false)).toEqual([{ length: 150, flags: 0 }, { length: 250, flags: 3 }]);
  });
  it('returns exactly one extent, no longer than the request, with REQ_ONE', () => {
    expect(clipExtents([{ length: 100, flags: 0 }, { length: 100, flags: 0 }], 50, true)).toEqual([{ length: 50, flags: 0 }]);
    expect(clipExtents([{ length: 10, flags: 2 }, { length: 100, flags: 0 }], 50, true)).toEqual([{ length: 10, flags: 2 }]);
  });
  it('reports all data when the device says nothing', () => {
    expect(clipExtents([], 4096, false)).toEqual([{ length: 4096, flags: 0 }]);
  });
});
