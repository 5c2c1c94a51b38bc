// nbdsnap origin list
import type { Command } from 'commander';
import type { OriginInfo } from '../../control/api.ts';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { formatColumns } from '../format.ts';
import { formatSize } from '../sizes.ts';

function render(origins: OriginInfo[]): string {
  const rows = origins.map((o) => [o.name, formatSize(o.sizeBytes), String(o.snapshots.length), String(o.connections), o.state, o.path]);
  return formatColumns(['NAME', 'SIZE', 'SNAPS', 'CONNS', 'STATE', 'PATH'], rows, new Set([1, 2, 3]));
}

export function register(origin: Command): void {
  clientCommand(origin.command('list'), { json: true })
    .description('list origins')
    .action(async (opts: ClientOptions) => {
      output(opts, await request(opts, { op: 'origin.list' }), render);
    });
}
