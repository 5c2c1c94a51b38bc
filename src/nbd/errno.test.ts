import { describe, expect, it } from 'vitest';
import { BlockError } from '../block/errors.ts';
import { NbdError, errorMessage, toNbdErrno } from './errno.ts';
import { CmdFlag } from './wire.ts';

function systemError(code: string): Error {
  return Object.assign(new Error(`${code}: failed`), { code, syscall: 'write', errno: -1 });
}

function recordingLogger() {
  const calls: { level: string; obj: unknown }[] = [];
  const logger = { warn: (obj: unknown) => calls.push({ level: 'warn', obj }), error: (obj: unknown) => calls.push({ level: 'error', obj }) };
  return { calls, logger: logger as never };
}

describe('toNbdErrno', () => {
  it('keeps the errno of BlockError and NbdError', () => {
    expect(toNbdErrno(new BlockError('ENOSPC', 'full'), 0)).toBe(28);
    expect(toNbdErrno(new BlockError('EIO', 'invalid snapshot'), 0)).toBe(5);
    expect(toNbdErrno(new NbdError('EPERM', 'read-only'), 0)).toBe(1);
    expect(toNbdErrno(new NbdError('ESHUTDOWN', 'bye'), 0)).toBe(108);
  });

  it.each([
    ['EPERM', 1], ['EROFS', 1], ['EIO', 5], ['ENOMEM', 12], ['EDQUOT', 28], ['EFBIG', 28], ['ENOSPC', 28],
    ['ESHUTDOWN', 108], ['EINVAL', 22], ['EBADF', 22], ['EACCES', 22],
  ])('maps the Node system error %s to %i', (code, errno) => {
    expect(toNbdErrno(systemError(code), 0)).toBe(errno);
  });

  it('allows ENOTSUP only with FAST_ZERO and EOVERFLOW only with DF', () => {
    expect(toNbdErrno(systemError('EOPNOTSUPP'), 0)).toBe(22);
    expect(toNbdErrno(systemError('EOPNOTSUPP'), CmdFlag.FAST_ZERO)).toBe(95);
    expect(toNbdErrno(new BlockError('ENOTSUP', 'slow'), CmdFlag.FAST_ZERO | CmdFlag.FUA)).toBe(95);
    expect(toNbdErrno(new BlockError('ENOTSUP', 'slow'), 0)).toBe(22);
    expect(toNbdErrno(systemError('EOVERFLOW'), CmdFlag.DF)).toBe(75);
    expect(toNbdErrno(systemError('EOVERFLOW'), 0)).toBe(22);
  });

  it('turns anything else into EIO and logs it with its stack', () => {
    const { calls, logger } = recordingLogger();
    const bug = new TypeError('undefined is not a function');
    expect(toNbdErrno(bug, 0, logger)).toBe(5);
    expect(toNbdErrno('a string', 0, logger)).toBe(5);
    expect(calls.map((c) => c.level)).toEqual(['error', 'error']);
    expect(calls[0].obj).toEqual({ err: bug });
  });

  it('logs system errors as warnings', () => {
    const { calls, logger } = recordingLogger();
    toNbdErrno(systemError('EIO'), 0, logger);
    expect(calls.map((c) => c.level)).toEqual(['warn']);
  });
});

describe('errorMessage', () => {
  it('keeps messages under the 1000-byte buffer qemu reads them through', () => {
    expect(errorMessage(new Error('short'))).toBe('short');
    expect(Buffer.byteLength(errorMessage(new Error('é'.repeat(2000))))).toBeLessThanOrEqual(1000);
  });
});
