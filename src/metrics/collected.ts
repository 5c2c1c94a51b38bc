// prom-client metrics whose values are read at scrape time, from plain counters and live state,
// instead of being updated where things happen: nothing on the I/O paths touches prom-client.
// Counters and gauges are prom-client's own, refilled by their collect() at each scrape;
// histograms are registered as collectors of their own (histogram-metric.ts).
import { Counter, Gauge, type Registry } from 'prom-client';

export type Labels = Record<string, string>;
/** Hands one series (labels and value) to the metric being collected. */
export type Emit = (labels: Labels, value: number) => void;

export interface CollectedSpec {
  name: string;
  help: string;
  labelNames?: readonly string[];
  /** Called at every scrape: emit every series (a series not emitted is not exposed). */
  read(emit: Emit): void;
}

/** prom-client options for a metric emptied, then refilled by `put` from `spec.read`, at every scrape. */
function refilledAtScrape<M extends Gauge | Counter>(registry: Registry, spec: CollectedSpec, put: (metric: M, labels: Labels, value: number) => void) {
  const { read } = spec;
  return {
    name: spec.name,
    help: spec.help,
    labelNames: spec.labelNames ?? [],
    registers: [registry],
    collect(this: M): void {
      this.reset();
      read((labels, value) => put(this, labels, value));
    },
  };
}

export function collectedGauge(registry: Registry, spec: CollectedSpec): Gauge {
  return new Gauge(refilledAtScrape<Gauge>(registry, spec, (gauge, labels, value) => gauge.set(labels, value)));
}

/** A counter mirroring a number that only grows (reset to 0 only when the daemon restarts). */
export function collectedCounter(registry: Registry, spec: CollectedSpec): Counter {
  return new Counter(refilledAtScrape<Counter>(registry, spec, (counter, labels, value) => counter.inc(labels, value)));
}
