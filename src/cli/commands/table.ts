// nbdsnap table [NAME]: one `dmsetup table`-shaped line per export.
import type { Command } from 'commander';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { formatTableLine } from '../format.ts';

export function register(program: Command): void {
  clientCommand(program.command('table'), { json: true })
    .description(
      'table like dmsetup: "NAME: 0 SECTORS snapshot-origin PATH" and "NAME: 0 SECTORS snapshot ORIGIN COW_PATH P|PO|N CHUNK" (origin name and paths where dm prints maj:min)',
    )
    .argument('[name]', 'only this origin or snapshot')
    .action(async (name: string | undefined, opts: ClientOptions) => {
      output(opts, await request(opts, { op: 'table', name }), (lines) => lines.map(formatTableLine).join('\n'));
    });
}
