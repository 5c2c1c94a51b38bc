// Checks for user-supplied paths (origin add PATH, snapshot create --cow PATH): the path must exist
// and be a regular file or a block device, must not lie inside the data dir (the daemon's own
// files), and is compared with the paths already in use by identity (device + inode, or the block
// device number), so two spellings of one file, or a symlink, are caught.
import fs from 'node:fs';
import path from 'node:path';
import { ControlError } from '../control/api.ts';

export interface CheckedPath {
  /** Symlinks resolved: what the catalog stores. */
  realPath: string;
  /** "b:<rdev>" for a block device, "f:<dev>:<ino>" for a file. */
  identity: string;
  isBlockDevice: boolean;
}

function identityOf(st: fs.Stats): string {
  return st.isBlockDevice() ? `b:${st.rdev}` : `f:${st.dev}:${st.ino}`;
}

/** Identity of a path already in the catalog, or undefined if it cannot be stat'ed now. */
export function pathIdentity(p: string): string | undefined {
  try {
    return identityOf(fs.statSync(p));
  } catch {
    return undefined; // missing now (e.g. a failed snapshot's COW): it cannot clash by identity
  }
}

function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Resolve and check `p` for `field`; throws ControlError INVALID with the reason. */
export function checkUserPath(p: string, field: string, dataDir: string): CheckedPath {
  let realPath: string;
  try {
    realPath = fs.realpathSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : `cannot be resolved (${code})`;
    throw new ControlError('INVALID', `${field}: ${p} ${why}`, { cause: err });
  }
  const st = fs.statSync(realPath);
  if (!st.isFile() && !st.isBlockDevice()) {
    throw new ControlError('INVALID', `${field}: ${p} is not a regular file or block device`);
  }
  const realDataDir = fs.existsSync(dataDir) ? fs.realpathSync(dataDir) : dataDir;
  if (isInside(realPath, realDataDir)) {
    throw new ControlError('INVALID', `${field}: ${p} is inside the data directory ${dataDir}, which nbdsnap manages itself`);
  }
  return { realPath, identity: identityOf(st), isBlockDevice: st.isBlockDevice() };
}

/**
 * mkdir -p with `mode` for the directories it creates. Not fs.mkdirSync({recursive}): on Node 24
 * that loops forever when mkdir fails with ENOENT under an existing parent (e.g. in /proc).
 */
export function makeDirs(dir: string, mode: number): void {
  try {
    fs.mkdirSync(dir, { mode });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && fs.statSync(dir).isDirectory()) return;
    const parent = path.dirname(dir);
    if (code !== 'ENOENT' || parent === dir || fs.existsSync(parent)) throw err;
    makeDirs(parent, mode);
    fs.mkdirSync(dir, { mode });
  }
}
