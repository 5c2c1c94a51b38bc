// A simulated disk with a volatile write cache, for power-cut tests. Reads see every completed
// write; the media (the durable image) only gets a write when it was issued with FUA, or at the
// next flush. Devices hang off one PowerRail, which cuts the power to all of them at the same
// instant: either at a chosen operation count (inside that operation, before it takes effect)
// or when cut() is called. Each device's surviving image is then its media plus, for every
// sector with unflushed writes, at random: nothing, or one of those writes (not necessarily
// the last: the disk may have written back an older one) - sector-level tearing and reordering.
// After the cut the devices keep working in memory; only the captured images matter.
import { MemoryDevice } from '../../src/block/memory-device.ts';
import type { BlockDevice, DeviceCaps, WriteOptions, ZeroOptions } from '../../src/block/device.ts';
import type { Rng } from './prng.ts';

const SECTOR = 512;

export class PowerRail {
  private readonly devices = new Set<PowercutDevice>();
  private readonly rng: Rng;
  private ops = 0;
  private cutAt = Infinity;
  private images: Map<PowercutDevice, Buffer> | undefined;
  private wake: (() => void) | undefined;
  private onCut: (() => void) | undefined;

  constructor(rng: Rng) {
    this.rng = rng;
  }

  attach(dev: PowercutDevice): void {
    this.devices.add(dev);
  }

  detach(dev: PowercutDevice): void {
    this.devices.delete(dev);
  }

  /** Cut the power `afterOps` write/flush operations from now; `onCut` runs synchronously at the cut, the promise resolves after. */
  armAfter(afterOps: number, onCut?: () => void): Promise<void> {
    this.images = undefined;
    this.onCut = onCut;
    this.cutAt = this.ops + afterOps;
    return new Promise((resolve) => (this.wake = resolve));
  }

  /** Counted by every device before a write or flush takes effect. */
  tick(): void {
    if (++this.ops === this.cutAt) this.cut();
  }

  /** Cut now (idempotent until re-armed): every attached device's surviving image is captured. */
  cut(): void {
    if (this.images) return;
    this.cutAt = Infinity;
    this.images = new Map([...this.devices].map((d) => [d, d.survivor(this.rng)]));
    this.onCut?.();
    this.wake?.();
  }

  /** Power back on (after the devices were rebuilt from their images): isCut is false again. */
  powerOn(): void {
    this.images = undefined;
  }

  get isCut(): boolean {
    return this.images !== undefined;
  }

  /** The image `dev` was left with by the last cut. */
  imageOf(dev: PowercutDevice): Buffer {
    const image = this.images?.get(dev);
    if (!image) throw new Error('no power cut has captured this device');
    return image;
  }
}

export class PowercutDevice implements BlockDevice {
  readonly blockSize = 512;
  readonly readOnly = false;
  readonly caps: DeviceCaps = { flush: true, fua: true, trim: false, zero: true, fastZero: false };
  private readonly visible: MemoryDevice;
  private readonly media: Buffer;
  /** Unflushed versions of each sector, oldest first. */
  private readonly cache = new Map<number, Buffer[]>();
  private readonly rail: PowerRail;

  /** A device whose media (and visible content) starts as `image` (copied). */
  constructor(rail: PowerRail, image: Buffer) {
    this.rail = rail;
    this.media = Buffer.from(image);
    this.visible = new MemoryDevice(image.length, { data: Buffer.from(image) });
    rail.attach(this);
  }

  get size(): number {
    return this.media.length;
  }

  /** Sectors with writes that a power cut now could lose. */
  get dirtySectors(): number {
    return this.cache.size;
  }

  read(buf: Uint8Array, offset: number): Promise<void> {
    return this.visible.read(buf, offset);
  }

  async write(buf: Uint8Array, offset: number, opts?: WriteOptions): Promise<void> {
    this.rail.tick();
    await this.visible.write(buf, offset);
    if (offset % SECTOR !== 0 || buf.length % SECTOR !== 0) throw new Error('powercut device: unaligned write');
    for (let at = 0; at < buf.length; at += SECTOR) {
      const sector = (offset + at) / SECTOR;
      const data = Buffer.from(buf.subarray(at, at + SECTOR));
      if (opts?.fua) {
        data.copy(this.media, sector * SECTOR);
        this.cache.delete(sector); // the FUA write supersedes whatever older version was cached
      } else {
        const versions = this.cache.get(sector);
        if (versions) versions.push(data);
        else this.cache.set(sector, [data]);
      }
    }
  }

  async flush(): Promise<void> {
    this.rail.tick();
    for (const [sector, versions] of this.cache) versions[versions.length - 1].copy(this.media, sector * SECTOR);
    this.cache.clear();
  }

  async trim(): Promise<void> {}

  zero(length: number, offset: number, opts?: ZeroOptions): Promise<void> {
    return this.write(Buffer.alloc(length), offset, opts);
  }

  async close(): Promise<void> {
    this.rail.detach(this);
  }

  /** What the media would hold if the power went now (see the note at the top). */
  survivor(rng: Rng): Buffer {
    const image = Buffer.from(this.media);
    const mode = rng.next();
    for (const [sector, versions] of this.cache) {
      const keep = mode < 0.2 ? -1 : mode < 0.4 ? versions.length - 1 : rng.int(-1, versions.length - 1);
      if (keep >= 0) versions[keep].copy(image, sector * SECTOR);
    }
    return image;
  }
}
