import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../log.ts';
import { STARTS_FILE, countStart } from './start-count.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function dataDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'start-count-'));
  dirs.push(d);
  return d;
}

describe('countStart', () => {
  it('counts from 1 and keeps the count across calls (restarts)', () => {
    const d = dataDir();
    expect([countStart(d, silentLogger()), countStart(d, silentLogger()), countStart(d, silentLogger())]).toEqual([1, 2, 3]);
    expect(fs.readFileSync(path.join(d, STARTS_FILE), 'utf8')).toBe('3\n');
    expect(fs.readdirSync(d)).toEqual([STARTS_FILE]); // no temporary file left
  });

  it('starts again from 1 over a file that holds no count, and never throws when it cannot write', () => {
    const d = dataDir();
    fs.writeFileSync(path.join(d, STARTS_FILE), 'garbage');
    expect(countStart(d, silentLogger())).toBe(1);
    expect(countStart(path.join(d, 'missing', 'dir'), silentLogger())).toBe(1);
  });
});
