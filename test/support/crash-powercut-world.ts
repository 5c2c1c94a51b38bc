// The in-process world of the power-cut test: an origin and its P, PO and N snapshots, every
// device a PowercutDevice on one PowerRail (under a jitter layer, so requests interleave), the
// real SnapshotOrigin/Snapshot targets over openStore, and the CrashModel in power-cut mode.
import { openStore } from '../../src/store/open-store.ts';
import type { StoreKind } from '../../src/store/exception-store.ts';
import { SnapshotOrigin } from '../../src/targets/snapshot-origin.ts';
import type { Snapshot } from '../../src/targets/snapshot.ts';
import { exceptionsPerArea } from '../../src/store/persistent/format.ts';
import { CrashModel } from './crash-model.ts';
import { deviceEndpoint } from './crash-endpoint.ts';
import { SECTOR, taggedBuffer } from './crash-pattern.ts';
import { Workload } from './crash-workload.ts';
import { jitter } from './jitter-device.ts';
import { PowerRail, PowercutDevice } from './powercut-device.ts';
import { makeRng, type Rng } from './prng.ts';

export const ORIGIN = 'origin';

export interface SnapSlot {
  name: string;
  kind: StoreKind;
  chunkSectors: number;
  dev: PowercutDevice;
  snap?: Snapshot;
  /** Activation finished before the power went (as the daemon's catalog 'ready'). */
  confirmed: boolean;
}

/** COW bytes that hold an exception for every origin chunk, the header and every metadata area. */
function cowBytes(originBytes: number, chunkSectors: number): number {
  const chunkBytes = chunkSectors * SECTOR;
  const chunks = Math.ceil(originBytes / chunkBytes);
  return (chunks + 3 + Math.ceil(chunks / exceptionsPerArea(chunkSectors))) * chunkBytes;
}

export class PowercutWorld {
  readonly rng: Rng;
  readonly rail: PowerRail;
  readonly model: CrashModel;
  readonly originBytes: number;
  readonly snaps = new Map<string, SnapSlot>();
  originDev: PowercutDevice;
  origin!: SnapshotOrigin;
  workload!: Workload;
  private counter = 0;

  constructor(seed: number, originBytes: number) {
    this.rng = makeRng(seed);
    this.rail = new PowerRail(this.rng);
    this.originBytes = originBytes;
    this.model = new CrashModel(originBytes / SECTOR, false);
    this.model.addDevice(ORIGIN);
    this.originDev = new PowercutDevice(this.rail, taggedBuffer(0, originBytes / SECTOR, 0));
  }

  /** Targets over the current devices (stores opened from what is on them), all connected to a fresh workload. */
  async build(): Promise<void> {
    this.origin = new SnapshotOrigin(jitter(this.originDev, this.rng));
    this.workload = new Workload(this.model, this.rng);
    this.workload.connect(ORIGIN, deviceEndpoint(this.origin));
    for (const slot of this.snaps.values()) {
      await this.attach(slot);
      this.workload.connect(slot.name, deviceEndpoint(slot.snap!));
    }
  }

  private async attach(slot: SnapSlot): Promise<void> {
    const store = await openStore(slot.kind, jitter(slot.dev, this.rng), { chunkSectors: slot.chunkSectors });
    slot.snap = await this.origin.createSnapshot(store);
  }

  /** Take a new snapshot of the (quiescent) origin; the model learns of it only if it was activated before a cut. */
  async createSnapshot(kind: StoreKind): Promise<void> {
    const chunkSectors = this.rng.pick([1, 2, 8, 16]);
    const name = `${kind.toLowerCase()}${this.counter++}`;
    const dev = new PowercutDevice(this.rail, Buffer.alloc(cowBytes(this.originBytes, chunkSectors)));
    const slot: SnapSlot = { name, kind, chunkSectors, dev, confirmed: false };
    this.snaps.set(name, slot);
    await this.attach(slot);
    if (this.rail.isCut) return;
    slot.confirmed = true;
    this.model.addSnapshot(name, ORIGIN);
    this.workload.connect(name, deviceEndpoint(slot.snap!));
  }

  /** After a cut: every device restarts from its surviving image; N and unconfirmed snapshots are gone. */
  restartDevices(): void {
    this.originDev = this.replace(this.originDev);
    for (const slot of [...this.snaps.values()]) {
      if (slot.kind === 'N' || !slot.confirmed) this.forget(slot);
      else slot.dev = this.replace(slot.dev);
    }
    this.rail.powerOn();
  }

  forget(slot: SnapSlot): void {
    this.rail.detach(slot.dev);
    this.snaps.delete(slot.name);
    this.workload.disconnect(slot.name);
    if (this.model.has(slot.name)) this.model.drop(slot.name);
  }

  private replace(dev: PowercutDevice): PowercutDevice {
    this.rail.detach(dev);
    return new PowercutDevice(this.rail, this.rail.imageOf(dev));
  }
}
