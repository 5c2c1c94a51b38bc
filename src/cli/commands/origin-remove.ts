// nbdsnap origin remove NAME [--force]
import type { Command } from 'commander';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';

export function register(origin: Command): void {
  clientCommand(origin.command('remove'), { json: true })
    .description(
      'remove an origin export (the file or device itself is left alone); refused while it has snapshots or connected clients',
    )
    .argument('<name>', 'origin name')
    .option('--force', 'also remove its snapshots (deleting COW files the daemon created) and disconnect clients')
    .action(async (name: string, opts: ClientOptions & { force?: boolean }) => {
      const result = await request(opts, { op: 'origin.remove', name, force: opts.force === true });
      output(opts, result, (r) => `removed ${r.removed.join(', ')}`);
    });
}
