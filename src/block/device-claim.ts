// Exclusive claims on the files and block devices nbdsnap serves (issue 12): two nbdsnap processes
// (daemons of any data dir, `nbdsnap serve`) never serve one origin or COW at the same time, since
// both would write it (COW metadata corrupted, a snapshot missing origin writes).
//
// - A block device is opened with O_EXCL (without O_CREAT): the kernel's exclusive claim, the one
//   mount, device-mapper (`dmsetup create`), md and mkfs take. A device that is mounted or held by
//   another exclusive opener is refused with EBUSY, whatever program holds it; the claim belongs
//   to the descriptor, so it ends with close() or with the process (SIGKILL included).
// - A regular file has no kernel claim, and Node has no flock()/fcntl(). It is claimed by binding
//   an abstract Unix socket named after the file's identity (st_dev:st_ino: every path, symlink or
//   hard link of the file gives one name). The kernel lets one socket hold a name and frees it
//   when the socket is closed, by us or by the death of the process, so there is never a stale
//   lock to clean up, and nothing is written anywhere.
//
// Limits (see the README, "What is exclusive"): a claim on a regular file only keeps out other
// nbdsnap processes, not dd, qemu or any other program writing the file. Abstract socket names
// live in a network namespace: nbdsnap processes in different network namespaces (containers
// without the host's network) do not see each other's claims on files (block devices are claimed
// kernel-wide). Any local user may bind a name first and so make nbdsnap refuse that file (a
// denial of service, never a double use). Claims on files are per process: opening a file this
// process already holds shares its claim (the daemon refuses one file used twice by itself, see
// daemon/conflicts.ts), and the name is freed at the last close. A block device opened twice in
// one process is refused the second time, as the kernel refuses any second exclusive open.
import fs from 'node:fs';
import net from 'node:net';

/** The file or device is held by someone else; `code` lets callers map it like a system error. */
export class DeviceInUseError extends Error {
  readonly code = 'EBUSY';
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.name = 'DeviceInUseError';
    this.path = path;
  }
}

export interface ClaimedDescriptor {
  fd: number;
  /** Give the claim up; call once the descriptor is closed. Safe to call more than once. */
  release(): void;
}

const NAME_PREFIX = '\0nbdsnap/file/';

/** This process's claims on regular files, by identity, with the number of open devices sharing each. */
const held = new Map<string, { server: net.Server; users: number }>();

function bindName(identity: string, path: string): net.Server {
  const server = net.createServer((socket) => socket.destroy()); // the name is the lock: nobody has business connecting
  // listen() on a Unix socket binds synchronously outside cluster workers: `listening` says at
  // once whether the name is ours. The EADDRINUSE 'error' event follows on the next tick and is
  // already answered by the throw below; a later accept() error does not unbind the name. So
  // errors are ignored here: only the bound name matters.
  server.on('error', () => {});
  server.listen(NAME_PREFIX + identity);
  if (!server.listening) throw new DeviceInUseError(path, 'file is in use by another nbdsnap process (a daemon or nbdsnap serve)');
  server.unref(); // a claim alone must not keep the process alive
  return server;
}

function claimFile(st: fs.BigIntStats, path: string): () => void {
  const identity = `${st.dev}:${st.ino}`;
  let claim = held.get(identity);
  if (!claim) {
    claim = { server: bindName(identity, path), users: 0 };
    held.set(identity, claim);
  }
  claim.users++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--claim.users > 0) return;
    held.delete(identity);
    claim.server.close();
  };
}

function isBlockDevicePath(path: string): boolean {
  try {
    return fs.statSync(path).isBlockDevice();
  } catch {
    return false; // missing or unreadable: the open below reports why (or creates the file)
  }
}

function openOnce(path: string, flags: number, mode: number, exclusive: boolean): { fd: number; st: fs.BigIntStats } {
  let fd: number;
  try {
    fd = fs.openSync(path, exclusive ? flags | fs.constants.O_EXCL : flags, mode);
  } catch (err) {
    if (!exclusive || (err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
    throw new DeviceInUseError(path, 'device is in use (mounted or held by another program, e.g. device-mapper)');
  }
  try {
    return { fd, st: fs.fstatSync(fd, { bigint: true }) };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/**
 * open(2) `path` with `flags` and claim what was opened for this process: a block device
 * kernel-exclusively (O_EXCL), a regular file against every other nbdsnap process. Throws
 * DeviceInUseError if someone holds it, or the open's own system error.
 */
export function openClaimed(path: string, flags: number, mode: number): ClaimedDescriptor {
  // O_EXCL means "exclusive claim" only without O_CREAT (with it: "create a new file").
  const exclusive = (flags & fs.constants.O_CREAT) === 0 && isBlockDevicePath(path);
  let { fd, st } = openOnce(path, flags, mode, exclusive);
  if (st.isBlockDevice() && !exclusive) {
    // The path became a device between stat and open (a replaced symlink): open it again, claimed.
    fs.closeSync(fd);
    ({ fd, st } = openOnce(path, flags, mode, true));
  }
  if (st.isBlockDevice()) return { fd, release: () => {} }; // opened with O_EXCL: the descriptor is the claim
  try {
    return { fd, release: claimFile(st, path) };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}
