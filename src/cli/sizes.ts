// Size arguments as LVM takes them: a number with an optional binary unit (512, 512K, 64M, 1G,
// 1T, also 1.5G; KiB/kb spellings and a trailing B accepted). Plain numbers are bytes, and a
// trailing 's' means 512-byte sectors. Anything else is refused with a clear message.
import { SECTOR_BYTES } from '../common/sectors.ts';
import { CliError, ExitCode } from './errors.ts';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  s: SECTOR_BYTES,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
  p: 2 ** 50,
};

const SIZE_PATTERN = /^(\d+(?:\.\d+)?)\s*([bskmgtp]?)(?:i?b)?$/i;

/** Parse `text` into bytes; throws CliError(INVALID) naming `what` for garbage, zero or overflow. */
export function parseSize(text: string, what = 'size'): number {
  const match = SIZE_PATTERN.exec(text.trim());
  if (!match) {
    throw new CliError(`${what}: cannot parse ${JSON.stringify(text)} (use bytes or a unit: 512, 512K, 64M, 1G, 1T)`, ExitCode.INVALID);
  }
  const bytes = Number(match[1]) * UNITS[match[2].toLowerCase()];
  if (!Number.isSafeInteger(bytes)) {
    throw new CliError(`${what}: ${JSON.stringify(text)} is not a whole number of bytes or is too large`, ExitCode.INVALID);
  }
  if (bytes === 0) throw new CliError(`${what}: must be greater than zero`, ExitCode.INVALID);
  return bytes;
}

/** Parse a decimal integer argument (no units, no hex), as the kernel parses chunk sizes. */
export function parseInteger(text: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(text.trim())) throw new CliError(`${what}: ${JSON.stringify(text)} is not a decimal whole number`, ExitCode.INVALID);
  const value = Number(text.trim());
  if (value < min || value > max) throw new CliError(`${what}: ${value} is out of range (${min}-${max})`, ExitCode.INVALID);
  return value;
}

/** Human-readable binary size for listings: 512B, 4.00K ... like lvs. */
export function formatSize(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T', 'P'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value}B` : `${value.toFixed(2)}${units[unit]}`;
}
