// Counts writes in flight and can hold new ones back while it waits for the old ones to finish:
// how a snapshot is activated at a precise point in time (the kernel suspends the origin).

export class WriteGate {
  private inflight = 0;
  private closed: Promise<void> | undefined;
  private reopen: (() => void) | undefined;
  private drained: (() => void) | undefined;

  /** Enter the gate. Returns undefined when open (no await needed), else a promise to retry after. */
  enter(): Promise<void> | undefined {
    if (this.closed) return this.closed.then(() => this.enter());
    this.inflight++;
    return undefined;
  }

  leave(): void {
    this.inflight--;
    if (this.inflight === 0 && this.drained) {
      const done = this.drained;
      this.drained = undefined;
      done();
    }
  }

  /** Stop admitting writes and wait until none are in flight. Call the returned function to reopen. */
  async close(): Promise<() => void> {
    while (this.closed) await this.closed; // one closer at a time
    this.closed = new Promise<void>((resolve) => (this.reopen = resolve));
    if (this.inflight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    return () => {
      const reopen = this.reopen;
      this.closed = undefined;
      this.reopen = undefined;
      reopen?.();
    };
  }
}
