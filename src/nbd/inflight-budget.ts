// A server-wide cap on bytes held for clients: request payloads being processed plus replies
// not yet flushed to the socket. Per-connection caps alone let N clients that never read
// hold N times as much.

export class InflightBudget {
  private used = 0;
  private readonly max: number;
  private readonly waiting = new Set<() => void>();

  constructor(maxBytes: number) {
    this.max = maxBytes;
  }

  /** Bytes held right now (read by metrics). */
  get usedBytes(): number {
    return this.used;
  }

  get exhausted(): boolean {
    return this.used >= this.max;
  }

  take(bytes: number): void {
    this.used += bytes;
  }

  /** Return bytes; wakes (on a later tick) everyone that waited for room. */
  give(bytes: number): void {
    this.used -= bytes;
    if (this.waiting.size === 0 || this.exhausted) return;
    const wake = [...this.waiting];
    this.waiting.clear();
    setImmediate(() => wake.forEach((fn) => fn()));
  }

  /** Call `fn` once there is room again. */
  wait(fn: () => void): void {
    this.waiting.add(fn);
  }

  forget(fn: () => void): void {
    this.waiting.delete(fn);
  }
}
