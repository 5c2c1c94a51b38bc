// Text output for the read commands: lvs-like aligned columns and dmsetup-like lines.
import type { StatusLine, TableLine } from '../control/api.ts';

/** Left-aligned columns separated by two spaces; numbers and percentages right-aligned. */
export function formatColumns(headers: string[], rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** `dmsetup status` shape: "name: 0 sectors target info" (an origin's info is empty, as in the kernel). */
export function formatStatusLine(l: StatusLine): string {
  return `${l.name}: ${l.start} ${l.sectors} ${l.target} ${l.info}`;
}

/** `dmsetup table` shape: "name: 0 sectors target args..." with names/paths where dm prints maj:min. */
export function formatTableLine(l: TableLine): string {
  return `${l.name}: ${l.start} ${l.sectors} ${l.target} ${l.args.join(' ')}`;
}

export function formatPercent(value: number | null): string {
  return value === null ? '' : value.toFixed(2);
}
