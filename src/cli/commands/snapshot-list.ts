// nbdsnap snapshot list [--origin ORIGIN]: one row per snapshot, like lvs (Data% = allocated/total).
import type { Command } from 'commander';
import type { SnapshotInfo } from '../../control/api.ts';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { formatColumns, formatPercent } from '../format.ts';
import { formatSize } from '../sizes.ts';

/** The MERGE% column is shown while a snapshot merges (as lvs shows Cpy%Sync only when it applies). */
function render(snapshots: SnapshotInfo[]): string {
  const merging = snapshots.some((s) => s.merge !== null);
  const rows = snapshots.map((s) => [
    s.name,
    s.origin,
    s.kind,
    String(s.chunkSectors),
    formatSize(s.sizeBytes),
    s.cowSizeBytes === null ? '' : formatSize(s.cowSizeBytes),
    formatPercent(s.dataPercent),
    s.state,
    String(s.connections),
    ...(merging ? [s.merge ? formatPercent(s.merge.percent) : ''] : []),
  ]);
  const headers = ['NAME', 'ORIGIN', 'KIND', 'CHUNK', 'SIZE', 'COW', 'DATA%', 'STATE', 'CONNS', ...(merging ? ['MERGE%'] : [])];
  return formatColumns(headers, rows, new Set([3, 4, 5, 6, 8, 9]));
}

export function register(snapshot: Command): void {
  clientCommand(snapshot.command('list'), { json: true })
    .description('list snapshots (CHUNK in sectors, DATA% as lvs Snap%; STATE active, invalid, overflow, failed, merging, merge-failed or removing; MERGE% while merging)')
    .option('--origin <origin>', 'only the snapshots of this origin')
    .action(async (opts: ClientOptions & { origin?: string }) => {
      output(opts, await request(opts, { op: 'snapshot.list', origin: opts.origin }), render);
    });
}
