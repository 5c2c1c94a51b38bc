// What the daemon's operations share: the composition root builds one of these.
import type { Catalog } from '../catalog/catalog.ts';
import type { Logger } from '../log.ts';
import type { DaemonConfig } from './config.ts';
import type { ExportLifecycle } from './lifecycle.ts';
import type { CarriedTransient } from '../store/transient-store.ts';

export interface DaemonContext {
  config: DaemonConfig;
  catalog: Catalog;
  /** The owner of every export's life: the only way to open, serve, detach or close one. */
  exports: ExportLifecycle;
  log: Logger;
  /** Runs changes one at a time, in arrival order (control requests and background merge completions). */
  exclusive: <T>(task: () => Promise<T> | T) => Promise<T>;
  /**
   * Transient (N) snapshots a live restart carried over, by name: restore reopens these with
   * their exceptions instead of failing them (and forgets them).
   */
  transients?: Map<string, CarriedTransient>;
  /** PO snapshots a live restart found in Overflow: restore puts them back in it. */
  overflowed?: Set<string>;
}
