// nbdsnap status [NAME]: one `dmsetup status`-shaped line per export.
import type { Command } from 'commander';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { formatStatusLine } from '../format.ts';

export function register(program: Command): void {
  clientCommand(program.command('status'), { json: true })
    .description(
      'status like dmsetup: "NAME: 0 SECTORS snapshot-origin " (empty info) and "NAME: 0 SECTORS snapshot ALLOC/TOTAL METADATA" (sectors; or Invalid, Overflow, Failed)',
    )
    .argument('[name]', 'only this origin or snapshot')
    .action(async (name: string | undefined, opts: ClientOptions) => {
      output(opts, await request(opts, { op: 'status', name }), (lines) => lines.map(formatStatusLine).join('\n'));
    });
}
