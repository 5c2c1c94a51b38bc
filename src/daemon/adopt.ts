// A successor takes over the previous daemon's NBD listeners, and after 'commit' its paused
// connections (successor.ts collected them). The sockets must be the ones this config names: a
// restart cannot move them.
import type { DaemonInfo } from '../control/api.ts';
import type { ControlServer } from '../control/server.ts';
import type { NbdServer } from '../nbd/server.ts';
import type { DaemonConfig } from './config.ts';
import { RestartFailed } from './restart.ts';

export type { Inherited } from './successor.ts';
import type { Inherited } from './successor.ts';

/** Listen on the inherited NBD listeners; returns the TCP address. */
export async function adoptInherited(inherited: Inherited, config: DaemonConfig, nbd: NbdServer): Promise<DaemonInfo['tcp']> {
  const unix = inherited.nbdListeners.filter((l) => l.unixPath !== undefined);
  const tcp = inherited.nbdListeners.filter((l) => l.unixPath === undefined);
  const moved: string[] = [];
  if (unix.length !== 1 || unix[0].unixPath !== config.nbdSocket) moved.push(`the NBD socket (${unix[0]?.unixPath} -> ${config.nbdSocket})`);
  if (inherited.control?.path !== config.controlSocket) moved.push(`the control socket (${inherited.control?.path} -> ${config.controlSocket})`);
  if (tcp.length !== (config.listen ? 1 : 0)) moved.push('the TCP listener (--listen)');
  if (moved.length > 0) throw new RestartFailed(`a live restart cannot move ${moved.join(', ')}: stop the daemon and start it again instead`);
  for (const l of inherited.nbdListeners) await nbd.adoptListener(l);
  let address: DaemonInfo['tcp'] = null;
  if (tcp.length === 1) {
    address = nbd.tcpAddress();
    if (config.listen && address && config.listen.port !== 0 && (address.port !== config.listen.port)) {
      throw new RestartFailed(`a live restart cannot move the TCP listener (${address.host}:${address.port} -> ${config.listen.host}:${config.listen.port})`);
    }
  }
  return address;
}

/** After 'commit': go on with the paused connections, and those accepted but never read. */
export function adoptConnections(inherited: Inherited, nbd: NbdServer, control: ControlServer): void {
  for (const c of inherited.connections) nbd.adoptConnection(c.handle, c.state, c.rest);
  inherited.onLate((kind, handle) => (kind === 'nbd' ? nbd.adoptFresh(handle) : control.adoptFresh(handle)));
}
