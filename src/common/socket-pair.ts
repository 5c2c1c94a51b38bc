// Two connected Unix stream sockets in this process (Node has no socketpair()): a listener in a
// fresh 0700 directory, one connect, one accept, and the listener and directory are gone again.
// The accepted end is created paused and has read nothing, so its handle can be given to another
// process as a clean connection.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface SocketPair {
  /** The connecting end, reading. */
  near: net.Socket;
  /** The accepted end, paused: nothing read from it in this process. */
  far: net.Socket;
}

export async function socketPair(): Promise<SocketPair> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbdsnap-pair-'));
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path.join(dir, 's'), () => (server.off('error', reject), resolve()));
    });
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const near = net.connect({ path: path.join(dir, 's'), allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      near.once('error', reject);
      near.once('connect', () => (near.off('error', reject), resolve()));
    });
    return { near, far: await accepted };
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
