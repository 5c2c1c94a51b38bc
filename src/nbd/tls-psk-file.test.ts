import { describe, expect, it } from 'vitest';
import { parsePskFile } from './tls-psk-file.ts';

describe('parsePskFile (nbdkit / psktool format)', () => {
  it('reads username:hexkey lines (CRLF too), skipping blank ones', () => {
    const keys = parsePskFile('alice:00ff10\r\n\n  \nbob:ABCDEF0123456789\nwith space:aa');
    expect([...keys.keys()]).toEqual(['alice', 'bob', 'with space']);
    expect(keys.get('alice')!.toString('hex')).toBe('00ff10');
    expect(keys.get('bob')!.toString('hex')).toBe('abcdef0123456789');
  });

  it.each([
    ['', /no username:hexkey line/],
    ['just-a-name\n', /line 1: expected username:hexkey/],
    [':00ff\n', /line 1: expected username:hexkey/],
    ['alice:00ff\nbob:xyz\n', /line 2: the key of "bob" is not an even number of hex digits/],
    ['alice:abc\n', /line 1: the key of "alice" is not an even number of hex digits/],
    ['alice:\n', /line 1: the key of "alice" is not an even number of hex digits/],
    ['alice:00\nalice:11\n', /line 2: username "alice" appears twice/],
    ['co:lon:aa\n', /line 1: the key of "co" is not an even number of hex digits/],
    [`alice:${'ab'.repeat(257)}\n`, /longer than 256 bytes/],
    [`${'u'.repeat(129)}:00\n`, /username longer than 128 bytes/],
  ])('refuses %j', (text, message) => {
    expect(() => parsePskFile(text)).toThrow(message);
  });

  it('never puts a key in an error message', () => {
    expect(() => parsePskFile('alice:00112233445566778899\nalice:00112233445566778899\n')).toThrow(/^(?!.*0011).*$/);
  });
});
