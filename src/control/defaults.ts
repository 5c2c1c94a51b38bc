// Default locations, shared by the daemon (where to listen) and the CLI (where to find it).
// Precedence for the data dir: $NBDSNAP_DATA_DIR, then /var/lib/nbdsnap for root, then
// $XDG_STATE_HOME/nbdsnap, then ~/.local/state/nbdsnap. Sockets live in the data dir.
import os from 'node:os';
import path from 'node:path';

export type Env = Record<string, string | undefined>;

export function defaultDataDir(env: Env = process.env, uid: number = process.getuid?.() ?? -1): string {
  if (env.NBDSNAP_DATA_DIR) return path.resolve(env.NBDSNAP_DATA_DIR);
  if (uid === 0) return '/var/lib/nbdsnap';
  if (env.XDG_STATE_HOME && path.isAbsolute(env.XDG_STATE_HOME)) return path.join(env.XDG_STATE_HOME, 'nbdsnap');
  return path.join(env.HOME || os.homedir(), '.local', 'state', 'nbdsnap');
}

export const CONTROL_SOCKET_NAME = 'control.sock';
export const NBD_SOCKET_NAME = 'nbd.sock';

/** The control socket a client should use: $NBDSNAP_CONTROL, else <default data dir>/control.sock. */
export function defaultControlPath(env: Env = process.env): string {
  if (env.NBDSNAP_CONTROL) return path.resolve(env.NBDSNAP_CONTROL);
  return path.join(defaultDataDir(env), CONTROL_SOCKET_NAME);
}
