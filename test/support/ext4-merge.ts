// Helpers of the ext4 merge test (test/e2e/snapshot-merge-ext4.test.ts): shell steps on mounted
// filesystems, a writer that keeps writing files until told to stop, and the kernel log of the
// test's loop devices (I/O errors and ext4 errors, after a marker written to /dev/kmsg).
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { mustRun, run, type ExecResult } from './exec.ts';

/** Run a shell script with -e; fails with its output when it exits non-zero. */
export async function sh(script: string): Promise<string> {
  return mustRun('sh', ['-ec', script]);
}

/** sh() that may fail: the result, for the cases where failing is allowed. */
export function trySh(script: string): Promise<ExecResult> {
  return run('sh', ['-ec', script]);
}

/** Overwrite the 4 KiB blocks `blocks` of `file` in place with random data (laid over `image` too, when given), then fsync it. */
export function overwriteBlocks(file: string, blocks: number[], image?: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    for (const block of blocks) {
      const data = crypto.randomBytes(4096);
      fs.writeSync(fd, data, 0, 4096, block * 4096);
      image?.set(data, block * 4096);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export interface Writer {
  /** Files completed (written and fsynced) so far. */
  files(): number;
  /** Ask it to stop after the file in progress; resolves with its exit code and output (again if already stopped). */
  stop(): Promise<{ code: number | null; output: string }>;
}

/** Write 64 KiB files of random data into `dir` (created), each fsynced, one after another, until `stopFile` exists. */
export function startWriter(dir: string, stopFile: string): Writer {
  fs.mkdirSync(dir, { recursive: true });
  const script = `cd "${dir}"; i=0; while [ ! -e "${stopFile}" ]; do head -c 65536 /dev/urandom > f$i.tmp; sync f$i.tmp; mv f$i.tmp f$i; i=$((i+1)); done`;
  const child = spawn('sh', ['-ec', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (b) => (output += b));
  child.stderr.on('data', (b) => (output += b));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    files: () => fs.readdirSync(dir).filter((f) => /^f\d+$/.test(f)).length,
    async stop() {
      if (child.exitCode === null) fs.writeFileSync(stopFile, '');
      return { code: await exited, output };
    },
  };
}

/** Poll until `check` holds (every 50 ms, within `ms`). */
export async function until(what: string, check: () => Promise<boolean> | boolean, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Mark the kernel log; kernelProblems() reads what follows the mark. */
export function markKernelLog(): string {
  const mark = `nbdsnap-test ${path.basename(process.argv[1] ?? 'vitest')} ${process.pid} ${Date.now()}`;
  fs.writeFileSync('/dev/kmsg', `${mark}\n`);
  return mark;
}

/** Kernel log lines after `mark` about `devices` (e.g. loop3) that match `pattern`. */
export async function kernelProblems(mark: string, devices: string[], pattern: RegExp): Promise<string[]> {
  const lines = (await mustRun('dmesg', [])).split('\n');
  const from = lines.findLastIndex((l) => l.includes(mark));
  const names = devices.map((d) => path.basename(d));
  return lines.slice(from + 1).filter((l) => pattern.test(l) && names.some((n) => new RegExp(`\\b${n}\\b`).test(l)));
}
