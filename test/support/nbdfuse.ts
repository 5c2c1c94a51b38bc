// Put an NBD export on the host's block layer without the nbd driver: nbdfuse makes the export a
// file, losetup makes that file a block device, and ext4 can be made, mounted and checked on it.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { mustRun, run } from './exec.ts';

export interface FuseDisk {
  /** The loop device (e.g. /dev/loop3). */
  loop: string;
  /** Mount the loop device's ext4 at `dir` (created). */
  mount(dir: string): Promise<void>;
  umount(): Promise<void>;
  /** Detach loop, unmount FUSE, wait for nbdfuse to exit. Safe to call twice. */
  close(): Promise<void>;
}

async function waitFor(test: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Attach `uri` (nbd+unix:///NAME?socket=S) under `workDir`; returns the loop-backed disk. */
export async function attachFuseDisk(uri: string, workDir: string): Promise<FuseDisk> {
  const fuseDir = path.join(workDir, `fuse-${path.basename(workDir)}-${Math.random().toString(36).slice(2, 8)}`);
  fs.mkdirSync(fuseDir, { recursive: true });
  const file = path.join(fuseDir, 'disk');
  const proc: ChildProcess = spawn('nbdfuse', [file, uri], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  await waitFor(() => fs.existsSync(file) || proc.exitCode !== null, 'nbdfuse').catch((err) => {
    throw new Error(`${err.message}: ${stderr}`);
  });
  if (proc.exitCode !== null) throw new Error(`nbdfuse exited: ${stderr}`);
  const loop = (await mustRun('losetup', ['-f', '--show', file])).trim();
  let mountDir: string | undefined;
  let closed = false;
  return {
    loop,
    async mount(dir) {
      fs.mkdirSync(dir, { recursive: true });
      await mustRun('mount', ['-t', 'ext4', loop, dir]);
      mountDir = dir;
    },
    async umount() {
      if (mountDir) await mustRun('umount', [mountDir]);
      mountDir = undefined;
    },
    async close() {
      if (closed) return;
      closed = true;
      if (mountDir) await run('umount', [mountDir]);
      await run('losetup', ['-d', loop]);
      await run('fusermount3', ['-u', fuseDir]);
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}
