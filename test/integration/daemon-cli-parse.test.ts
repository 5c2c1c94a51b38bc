// CLI parsing without a daemon: sizes, integers, output formats, and commander usage errors with
// exitOverride (every parse error is exit code USAGE, every command has --help).
import { describe, it, expect, vi, afterEach } from 'vitest';
import { parseSize, parseInteger, formatSize } from '../../src/cli/sizes.ts';
import { formatColumns, formatStatusLine, formatTableLine } from '../../src/cli/format.ts';
import { attachArgs } from '../../src/cli/commands/attach.ts';
import { main } from '../../src/cli/main.ts';
import { ExitCode } from '../../src/cli/errors.ts';

describe('parseSize', () => {
  it.each([
    ['512', 512],
    ['512K', 512 * 1024],
    ['512k', 512 * 1024],
    ['64M', 64 * 2 ** 20],
    ['1G', 2 ** 30],
    ['1g', 2 ** 30],
    ['1T', 2 ** 40],
    ['1GiB', 2 ** 30],
    ['1gb', 2 ** 30],
    ['1.5G', 1.5 * 2 ** 30],
    ['8s', 4096],
    ['4096b', 4096],
    [' 2M ', 2 * 2 ** 20],
  ])('%j is %d bytes', (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(['', 'G', '1X', '-1M', '1.5', '0', '0K', '1e6', '0x100', '1 2', '10PB0', '99999999P'])('refuses %j', (text) => {
    expect(() => parseSize(text, '--size')).toThrow(expect.objectContaining({ exitCode: ExitCode.INVALID, message: expect.stringMatching(/^--size: /) }));
  });
});

describe('parseInteger', () => {
  it('takes decimal whole numbers in range only', () => {
    expect(parseInteger('16', 'n', 1, 16)).toBe(16);
    for (const bad of ['17', '0', '16k', '0x10', '-1', '1.0', '']) expect(() => parseInteger(bad, 'n', 1, 16)).toThrow(/^n: /);
  });
});

describe('output formats', () => {
  it('aligns columns, right-aligning numbers', () => {
    expect(formatColumns(['NAME', 'SIZE'], [['a', '1.00M'], ['long', '10.00G']], new Set([1]))).toBe('NAME    SIZE\na      1.00M\nlong  10.00G');
    expect(formatSize(512)).toBe('512B');
    expect(formatSize(3 * 2 ** 30)).toBe('3.00G');
  });

  it('shapes status and table lines like dmsetup', () => {
    expect(formatStatusLine({ name: 'o', start: 0, sectors: 2048, target: 'snapshot-origin', info: '' })).toBe('o: 0 2048 snapshot-origin ');
    expect(formatStatusLine({ name: 's', start: 0, sectors: 2048, target: 'snapshot', info: '48/8192 32' })).toBe('s: 0 2048 snapshot 48/8192 32');
    expect(formatTableLine({ name: 's', start: 0, sectors: 2048, target: 'snapshot', args: ['o', '/c', 'P', '8'] })).toBe('s: 0 2048 snapshot o /c P 8');
  });

  it('builds the nbd-client command line', () => {
    expect(attachArgs('/run/nbd.sock', 'snap', '/dev/nbd0')).toEqual(['-unix', '/run/nbd.sock', '/dev/nbd0', '-N', 'snap', '-b', '4096']);
    expect(attachArgs('/s', 'x', '/dev/nbd1', { connections: 2, timeout: 30 })).toEqual(['-unix', '/s', '/dev/nbd1', '-N', 'x', '-b', '4096', '-C', '2', '-t', '30']);
    expect(attachArgs('/s', 'x', '/dev/nbd1', { blockSize: 512 })).toEqual(['-unix', '/s', '/dev/nbd1', '-N', 'x', '-b', '512']);
  });
});

describe('usage errors', () => {
  afterEach(() => vi.restoreAllMocks());
  const quiet = () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  };

  it.each([
    [['bogus']],
    [['origin', 'add', 'only-name']],
    [['origin', 'frobnicate']],
    [['snapshot', 'create', 's']],
    [['snapshot', 'create', 's', '--origin']],
    [['status', 'a', 'b']],
    [['attach', 'x']],
    [['detach']],
    [['origin', 'list', '--no-such-flag']],
  ])('%j is exit code USAGE', async (argv) => {
    quiet();
    expect(await main(argv)).toBe(ExitCode.USAGE);
  });

  it('reports --cow with --size as USAGE and a bad --persistent as INVALID before contacting a daemon', async () => {
    quiet();
    const control = ['--control', '/nonexistent.sock'];
    expect(await main(['snapshot', 'create', 's', '--origin', 'o', '--cow', '/c', '--size', '1M', ...control])).toBe(ExitCode.USAGE);
    expect(await main(['snapshot', 'create', 's', '--origin', 'o', '--size', '1M', '--persistent', 'Q', ...control])).toBe(ExitCode.INVALID);
    expect(await main(['snapshot', 'create', 's', '--origin', 'o', '--size', '1M', ...control])).toBe(ExitCode.DAEMON_UNREACHABLE);
  });
});
