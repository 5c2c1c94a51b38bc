// nbdsnap snapshot remove NAME [--force]
import type { Command } from 'commander';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';

export function register(snapshot: Command): void {
  clientCommand(snapshot.command('remove'), { json: true })
    .description(
      'remove a snapshot; refused while a client is connected. A COW file the daemon created (--size) is deleted; an external --cow file or device is left as it is',
    )
    .argument('<name>', 'snapshot name')
    .option('--force', 'disconnect connected clients first')
    .action(async (name: string, opts: ClientOptions & { force?: boolean }) => {
      const result = await request(opts, { op: 'snapshot.remove', name, force: opts.force === true });
      output(opts, result, (r) => `removed ${r.removed.join(', ')}`);
    });
}
