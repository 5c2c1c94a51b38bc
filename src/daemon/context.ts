// What the daemon's operations share: the composition root builds one of these.
import type { Catalog } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';
import type { NbdServer } from '../nbd/server.ts';
import type { DaemonConfig } from './config.ts';
import type { Registry } from './registry.ts';

export interface DaemonContext {
  config: DaemonConfig;
  catalog: Catalog;
  registry: Registry;
  nbd: NbdServer;
  log: Logger;
}
