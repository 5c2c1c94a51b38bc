// nbdkit's (and GnuTLS psktool's) PSK file: one `username:hexkey` per line, e.g.
//   alice:0123456789abcdef0123456789abcdef
// The username is everything before the first colon. Blank lines are skipped. Keys never appear
// in error messages.

/** Longest key accepted, in bytes (psktool makes 32; OpenSSL's PSK_MAX_PSK_LEN is 512). */
export const MAX_PSK_BYTES = 256;
/** Longest identity accepted, in bytes (OpenSSL's PSK_MAX_IDENTITY_LEN). */
export const MAX_PSK_IDENTITY_BYTES = 128;

/** Keys by username; throws Error with the line number of the first bad line. */
export function parsePskFile(text: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const lines = text.split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    if (line.trim() === '') continue;
    const where = `line ${index + 1}`;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`${where}: expected username:hexkey`);
    const user = line.slice(0, colon);
    const hex = line.slice(colon + 1).trim();
    if (Buffer.byteLength(user) > MAX_PSK_IDENTITY_BYTES) throw new Error(`${where}: username longer than ${MAX_PSK_IDENTITY_BYTES} bytes`);
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw new Error(`${where}: the key of ${JSON.stringify(user)} is not an even number of hex digits`);
    if (hex.length / 2 > MAX_PSK_BYTES) throw new Error(`${where}: the key of ${JSON.stringify(user)} is longer than ${MAX_PSK_BYTES} bytes`);
    if (keys.has(user)) throw new Error(`${where}: username ${JSON.stringify(user)} appears twice`);
    keys.set(user, Buffer.from(hex, 'hex'));
  }
  if (keys.size === 0) throw new Error('no username:hexkey line');
  return keys;
}
