// A daemon to fuzz the control API and the CLI against: origin `o`, snapshot `s` (COW made by
// --size), spare images outside the data dir, a symlink into the data dir, and a way to list
// everything on disk that the fuzz must not have added to.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { startDaemon, tempDir, type DaemonHandle } from './daemon-harness.ts';
import { SENTINEL, type ControlFuzzEnv } from './fuzz-control-gen.ts';

export interface ControlFuzzSetup {
  daemon: DaemonHandle;
  env: ControlFuzzEnv;
}

function image(dir: string, name: string, size: number): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.alloc(0));
  fs.truncateSync(file, size);
  return file;
}

export async function startControlFuzz(): Promise<ControlFuzzSetup> {
  const dir = tempDir('fuzz-ctl-');
  const origin = image(dir, 'origin.img', 1024 * 1024);
  const files = [origin, image(dir, 'spare.img', 2 * 1024 * 1024), image(dir, 'zero.cow', 1024 * 1024), path.join(dir, 'victim.txt')];
  fs.writeFileSync(files[3], 'root:x:0:0:not really /etc/passwd\n'.repeat(100));
  const daemon = await startDaemon(dir, { args: ['--log-level', 'error'] });
  fs.symlinkSync(daemon.dataDir, path.join(dir, 'link-to-data'));
  await daemon.ok('origin', 'add', 'o', origin);
  await daemon.ok('snapshot', 'create', 's', '--origin', 'o', '--size', '1M');
  return { daemon, env: { dir, dataDir: daemon.dataDir, origin: 'o', snapshot: 's', files } };
}

/** Every path below `root` (relative); what lies behind link-to-data is the data dir's, not ours. */
export function listTree(root: string): string[] {
  return (fs.readdirSync(root, { recursive: true }) as string[]).filter((p) => !p.startsWith('link-to-data/')).sort();
}

export interface CatalogRows {
  origins: string[];
  snapshots: { name: string; cowPath: string; cowCreated: boolean }[];
}

/** The catalog as it is on disk (read-only, beside the running daemon). */
export function readCatalog(dataDir: string): CatalogRows {
  const db = new Database(path.join(dataDir, 'catalog.db'), { readonly: true, fileMustExist: true });
  try {
    const origins = (db.prepare('SELECT name FROM origins ORDER BY name').all() as { name: string }[]).map((r) => r.name);
    const rows = db.prepare('SELECT name, cow_path AS cowPath, cow_created AS cowCreated FROM snapshots ORDER BY name').all() as { name: string; cowPath: string; cowCreated: number }[];
    return { origins, snapshots: rows.map((r) => ({ ...r, cowCreated: r.cowCreated === 1 })) };
  } finally {
    db.close();
  }
}

/** Paths named after the fuzz sentinel anywhere a traversal could have put them (data dir's cow/ aside). */
export function strayFiles(env: ControlFuzzEnv): string[] {
  const args = ['/', '-maxdepth', '3', '(', '-path', '/proc', '-o', '-path', '/sys', ')', '-prune', '-o', '-name', `*${SENTINEL}*`, '-print'];
  const found = [env.dir, '/'].flatMap((root) => spawnSync('find', [root, ...args.slice(1)], { encoding: 'utf8' }).stdout.split('\n'));
  return [...new Set(found)].filter((p) => p !== '' && !p.startsWith(path.join(env.dataDir, 'cow') + '/'));
}
