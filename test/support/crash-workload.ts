// The crash tests' load generator: workers issue random writes (some with FUA), reads and
// flushes over every connection of every device, recording each in the CrashModel. Two requests
// on one device never overlap if either is a read or a write (the model needs one order per
// sector); flushes overlap anything. A read must return the newest value. Once stop() is called
// (just before a crash), failed requests are expected and no longer count as failures.
import type { Rng } from './prng.ts';
import type { CrashModel } from './crash-model.ts';
import type { Endpoint } from './crash-endpoint.ts';
import { taggedBuffer } from './crash-pattern.ts';

interface Busy {
  device: string;
  start: number;
  end: number;
}

export interface WorkloadCounts {
  writes: number;
  fuaWrites: number;
  reads: number;
  flushes: number;
}

export class Workload {
  readonly failures: string[] = [];
  readonly counts: WorkloadCounts = { writes: 0, fuaWrites: 0, reads: 0, flushes: 0 };
  private readonly model: CrashModel;
  private readonly rng: Rng;
  private readonly endpoints = new Map<string, Endpoint[]>();
  private readonly busy = new Set<Busy>();
  private readonly paused = new Set<string>();
  private halted = false;
  private frozen = false;
  private idle: (() => void) | undefined;

  constructor(model: CrashModel, rng: Rng) {
    this.model = model;
    this.rng = rng;
  }

  connect(device: string, endpoint: Endpoint): void {
    this.endpoints.set(device, [...(this.endpoints.get(device) ?? []), endpoint]);
  }

  disconnect(device: string): void {
    for (const ep of this.endpoints.get(device) ?? []) ep.close();
    this.endpoints.delete(device);
  }

  /** Run `workers` concurrent loops until stop(); resolves when all have ended. */
  async run(workers: number): Promise<void> {
    this.halted = false;
    this.frozen = false;
    await Promise.all(Array.from({ length: workers }, () => this.worker()));
  }

  get stopped(): boolean {
    return this.halted;
  }

  /**
   * Stop issuing requests; from now on request errors are expected (a crash follows). `freeze`:
   * the crash has already happened (a simulated power cut), so completions from now on are not
   * acknowledgements and change nothing in the model.
   */
  stop(freeze = false): void {
    this.halted = true;
    this.frozen ||= freeze;
  }

  /** Hold new requests to `device` and wait until none is in flight (to take a snapshot of it). */
  async quiesce(device: string): Promise<void> {
    this.paused.add(device);
    while ([...this.busy].some((b) => b.device === device)) await new Promise<void>((resolve) => (this.idle = resolve));
  }

  resume(device: string): void {
    this.paused.delete(device);
  }

  private async worker(): Promise<void> {
    while (!this.halted) {
      const device = this.rng.pick([...this.endpoints.keys()].filter((d) => !this.paused.has(d)));
      if (device === undefined) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        continue;
      }
      await this.step(device, this.rng.pick(this.endpoints.get(device)!));
    }
  }

  private async step(device: string, ep: Endpoint): Promise<void> {
    const roll = this.rng.next();
    if (roll < 0.08) return this.flush(device, ep);
    const count = this.rng.chance(0.3) ? this.rng.pick([8, 16, 32]) : this.rng.int(1, 24);
    const aligned = this.rng.chance(0.3);
    const max = this.model.sectors - count;
    const sector = aligned ? Math.floor(this.rng.int(0, max) / 8) * 8 : this.rng.int(0, max);
    const range: Busy = { device, start: sector, end: sector + count };
    if ([...this.busy].some((b) => b.device === device && b.start < range.end && range.start < b.end)) {
      await new Promise((resolve) => setImmediate(resolve));
      return;
    }
    this.busy.add(range);
    try {
      if (roll < 0.45) await this.read(device, ep, sector, count);
      else await this.write(device, ep, sector, count, this.rng.chance(0.15));
    } finally {
      this.busy.delete(range);
      this.idle?.();
    }
  }

  private async write(device: string, ep: Endpoint, sector: number, count: number, fua: boolean): Promise<void> {
    const id = this.model.beginWrite(device, sector, count);
    try {
      await ep.write(taggedBuffer(sector, count, id), sector, fua);
    } catch (err) {
      return this.failed(err);
    }
    if (this.frozen) return;
    this.model.ackWrite(device, sector, count, id, fua);
    this.counts.writes++;
    if (fua) this.counts.fuaWrites++;
  }

  private async read(device: string, ep: Endpoint, sector: number, count: number): Promise<void> {
    let data: Buffer;
    try {
      data = await ep.read(sector, count);
    } catch (err) {
      return this.failed(err);
    }
    if (this.frozen) return;
    const wrong = this.model.checkRead(device, data, sector);
    if (wrong) this.failures.push(`read during the workload: ${wrong}`);
    this.counts.reads++;
  }

  private async flush(device: string, ep: Endpoint): Promise<void> {
    const token = this.model.beginFlush(device);
    try {
      await ep.flush();
    } catch (err) {
      return this.failed(err);
    }
    if (this.frozen) return;
    this.model.endFlush(device, token);
    this.counts.flushes++;
  }

  private failed(err: unknown): void {
    if (!this.halted) this.failures.push(`request failed before the crash: ${(err as Error).message}`);
  }
}
