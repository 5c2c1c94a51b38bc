// The Unix-socket listener shared by the control and NBD servers: sockets are created mode 0600,
// and a stale socket left by a crashed process is removed, but a live one (another process
// answers) or a non-socket file at the path is never touched.
import fs from 'node:fs';
import net from 'node:net';

export class SocketInUseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SocketInUseError';
  }
}

function probe(path: string, timeoutMs: number): Promise<'live' | 'dead'> {
  return new Promise((resolve) => {
    const socket = net.connect(path);
    const done = (result: 'live' | 'dead'): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done('live')); // accepted but silent: someone is there
    socket.once('connect', () => done('live'));
    socket.once('error', () => done('dead'));
  });
}

/** Make `path` free for listen(): remove a stale socket; throw SocketInUseError if it is live or not a socket. */
export async function clearStaleSocket(path: string, timeoutMs = 1000): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new SocketInUseError(`${path} exists and is not a socket; refusing to replace it`);
  if ((await probe(path, timeoutMs)) === 'live') {
    throw new SocketInUseError(`another process is listening on ${path} (is a daemon already running?)`);
  }
  fs.unlinkSync(path);
}

/**
 * listen() on a Unix socket created with mode 0600 (umask set around the synchronous bind). It is
 * bound under a temporary name beside `path` and renamed into place: clients never see it before
 * its mode is set, and libuv, which unlinks the name it bound when the listener closes, never
 * removes `path` itself. A live restart relies on that: the old daemon closes its copy of a
 * listener the successor goes on accepting on (the socket file is removed by whoever stops).
 */
export function listenPrivate(server: net.Server, path: string): Promise<void> {
  const bound = `${path}.${process.pid}.bind`;
  fs.rmSync(bound, { force: true });
  return new Promise((resolve, reject) => {
    const previous = process.umask(0o177);
    try {
      server.once('error', reject);
      server.listen(bound, () => {
        server.off('error', reject);
        try {
          fs.chmodSync(bound, 0o600); // belt and braces: the bind already used the umask
          fs.renameSync(bound, path);
          resolve();
        } catch (err) {
          server.close();
          reject(err);
        }
      });
    } finally {
      process.umask(previous);
    }
  });
}
