// The reference model of the crash tests, per device (origin or snapshot) and per 512-byte
// sector: the list of write ids that sector may hold after a crash. The list starts with the
// newest value that is guaranteed to have survived (the "floor") and continues with every write
// issued after it, acknowledged or not. So after a crash each sector must hold one of its listed
// values: never an older one, never garbage, never data from another sector or device.
//
// When a write becomes guaranteed depends on the crash being modelled:
//   ackIsDurable = true  (SIGKILL of the daemon): an acknowledged write is already in the kernel's
//                         page cache, so the floor moves to it as soon as it is acknowledged;
//   ackIsDurable = false (power cut): only when it was acknowledged with FUA, or when a FLUSH on
//                         the same device, sent after it was acknowledged, has completed.
// Writes to one sector must be issued one at a time (the workload locks ranges), so list order is
// the order the device saw them in.
import { SECTOR, readTag } from './crash-pattern.ts';

interface Acked {
  sector: number;
  count: number;
  id: number;
}

interface DeviceModel {
  values: number[][];
  acked: Acked[];
}

/** What a FLUSH covers: the writes acknowledged before it was sent. */
export type FlushToken = Acked[];

export class CrashModel {
  readonly sectors: number;
  readonly ackIsDurable: boolean;
  private readonly devices = new Map<string, DeviceModel>();
  private nextId = 1;

  constructor(sectors: number, ackIsDurable: boolean) {
    this.sectors = sectors;
    this.ackIsDurable = ackIsDurable;
  }

  /** A device whose every sector holds write id `initialId` (0: the origin's initial image). */
  addDevice(name: string, initialId = 0): void {
    this.devices.set(name, { values: Array.from({ length: this.sectors }, () => [initialId]), acked: [] });
  }

  /** A snapshot of `origin` taken now: the origin must be quiescent (no write in flight). Creation flushes the origin. */
  addSnapshot(name: string, origin: string): void {
    const from = this.get(origin);
    this.endFlush(origin, this.beginFlush(origin));
    this.devices.set(name, { values: from.values.map((list) => [list[list.length - 1]]), acked: [] });
  }

  drop(name: string): void {
    this.devices.delete(name);
  }

  has(name: string): boolean {
    return this.devices.has(name);
  }

  get names(): string[] {
    return [...this.devices.keys()];
  }

  /** Record a write being issued; returns its write id (tag the data with it). */
  beginWrite(name: string, sector: number, count: number): number {
    const id = this.nextId++;
    const dev = this.get(name);
    for (let s = sector; s < sector + count; s++) dev.values[s].push(id);
    return id;
  }

  ackWrite(name: string, sector: number, count: number, id: number, fua: boolean): void {
    const dev = this.get(name);
    if (fua || this.ackIsDurable) this.makeDurable(dev, { sector, count, id });
    else dev.acked.push({ sector, count, id });
  }

  beginFlush(name: string): FlushToken {
    return this.get(name).acked.splice(0);
  }

  endFlush(name: string, token: FlushToken): void {
    const dev = this.get(name);
    for (const write of token) this.makeDurable(dev, write);
  }

  /** A read while nothing else touched these sectors: it must return the newest value. */
  checkRead(name: string, buf: Buffer, sector: number): string | undefined {
    const dev = this.get(name);
    for (let i = 0; i < buf.length / SECTOR; i++) {
      const list = dev.values[sector + i];
      const got = readTag(buf, i, sector);
      if (got !== list[list.length - 1]) return `${name} sector ${sector + i}: read ${got}, expected ${list[list.length - 1]}`;
    }
    return undefined;
  }

  /** Compare a whole device image read after a crash; returns one line per bad sector (at most `max`). */
  checkImage(name: string, image: Buffer, max = 10): string[] {
    const dev = this.get(name);
    const bad: string[] = [];
    for (let s = 0; s < this.sectors && bad.length < max; s++) {
      const got = readTag(image, s, 0);
      if (!dev.values[s].includes(got)) bad.push(`${name} sector ${s}: holds ${got === -1 ? 'garbage' : `write ${got}`}, allowed ${dev.values[s].join(',')}`);
    }
    return bad;
  }

  /** After a crash was checked: what the device holds now is its durable state. */
  settle(name: string, image: Buffer): void {
    const dev = this.get(name);
    for (let s = 0; s < this.sectors; s++) dev.values[s] = [readTag(image, s, 0)];
    dev.acked = [];
  }

  /** Sectors whose newest write is not yet guaranteed (what a crash now could lose or keep). */
  uncertainSectors(name: string): number {
    return this.get(name).values.reduce((n, list) => n + (list.length > 1 ? 1 : 0), 0);
  }

  private makeDurable(dev: DeviceModel, write: Acked): void {
    for (let s = write.sector; s < write.sector + write.count; s++) {
      const list = dev.values[s];
      const at = list.indexOf(write.id);
      if (at > 0) list.splice(0, at); // -1: a later durable write already replaced it
    }
  }

  private get(name: string): DeviceModel {
    const dev = this.devices.get(name);
    if (!dev) throw new Error(`crash model has no device ${name}`);
    return dev;
  }
}
