// Process-wide settings that an NBD-serving process should apply once, at startup, before the
// first asynchronous fs call (serve and the daemon both call this).
import v8 from 'node:v8';

/**
 * - UV_THREADPOOL_SIZE (unless the user set it): device I/O that cannot run synchronously goes
 *   to libuv's threadpool, whose default of 4 threads serialises deep queues.
 * - --external-memory-accounted-in-global-limit: every socket read allocates a fresh 64 KiB
 *   buffer; with V8's default fixed external-memory trigger that caused ~12 full mark-compact
 *   GCs per second at 1 GB/s of writes (measured 51 vs 6 in 4 s, and ~15% more throughput).
 */
export function tuneRuntimeForNbd(): void {
  process.env.UV_THREADPOOL_SIZE ??= '16';
  v8.setFlagsFromString('--external-memory-accounted-in-global-limit');
}
