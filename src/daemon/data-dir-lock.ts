// One daemon per data dir (issue 12): a second daemon on the same catalog and COW files would
// write the same stores and corrupt them. Whatever opens the catalog to change it takes this lock
// first, before anything in the data dir is read or changed (today only the daemon does).
//
// The lock is an exclusive fcntl() lock on <data-dir>/daemon.lock, taken through SQLite (Node has
// no flock() or fcntl(); better-sqlite3 is already the catalog's driver): the file is an empty
// SQLite database opened with locking_mode=EXCLUSIVE, whose exclusive lock, once taken, is held
// until the connection closes. The kernel drops it when the process dies (SIGKILL included), so
// there is no stale lock and no pid file to trust. Why this and not the alternatives:
// - an abstract Unix socket named after the data dir is per network namespace: two containers
//   sharing the data dir through a volume would both get it. fcntl locks belong to the inode and
//   are seen from every namespace;
// - locking catalog.db itself (locking_mode=EXCLUSIVE there) would also lock out every reader of
//   the catalog while the daemon runs (sqlite3 for a look, tests that read it).
// Limits: on a network filesystem the lock is only as good as the server's fcntl locking (NFS
// needs lockd), so two hosts sharing a data dir over a filesystem without it are not kept apart.
// POSIX locks are per process and any close() of the file by the process drops them: nothing else
// in the process may open daemon.lock (SQLite tracks its own descriptors), so the holder's pid is
// read from /proc/locks, not from the file.
import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { devNumbers } from '../block/file-device.ts';

export const LOCK_FILE = 'daemon.lock';

/** The data dir is owned by another daemon (or another tool holding its lock). */
export class DataDirLockedError extends Error {
  readonly dataDir: string;
  readonly holderPid: number | undefined;
  constructor(dataDir: string, holderPid: number | undefined) {
    const who = holderPid === undefined ? 'another nbdsnap daemon' : `another nbdsnap daemon (pid ${holderPid})`;
    super(`the data dir ${dataDir} is in use by ${who}; stop it first or use another --data-dir`);
    this.name = 'DataDirLockedError';
    this.dataDir = dataDir;
    this.holderPid = holderPid;
  }
}

export interface DataDirLock {
  /** Give the data dir up (after the catalog is closed). Safe to call more than once. */
  release(): void;
}

/** The pid holding a POSIX write lock on `file`, from /proc/locks, if this process can see it. */
function lockHolderPid(file: string): number | undefined {
  try {
    const st = fs.statSync(file); // stat, not open: an open/close here would drop our own lock
    const [major, minor] = devNumbers(st.dev).split(':').map(Number);
    // "1: POSIX  ADVISORY  WRITE 1218 fe:00:2146498 1073741824 1073742335" (major:minor in hex)
    const wanted = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${st.ino}`;
    for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
      const match = /^\d+:\s+POSIX\s+\S+\s+WRITE\s+(\d+)\s+(\S+)\s/.exec(line);
      if (match && match[2] === wanted && Number(match[1]) > 0) return Number(match[1]);
    }
  } catch {
    // Only the message's pid depends on this: no /proc, or the file went away, leaves it out.
  }
  return undefined;
}

/** Take the data dir's lock, or throw DataDirLockedError at once (no waiting) if it is held. */
export function lockDataDir(dataDir: string): DataDirLock {
  const file = path.join(dataDir, LOCK_FILE);
  const db = new BetterSqlite3(file, { timeout: 0 });
  try {
    db.pragma('journal_mode = MEMORY'); // no daemon.lock-journal left beside it
    db.pragma('locking_mode = EXCLUSIVE'); // keep the lock after the transaction below
    db.exec('BEGIN EXCLUSIVE; COMMIT');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') throw new DataDirLockedError(dataDir, lockHolderPid(file));
    throw err;
  }
  return {
    release: () => {
      if (db.open) db.close();
    },
  };
}
