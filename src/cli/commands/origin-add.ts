// nbdsnap origin add NAME PATH: serve an existing file or block device as a snapshot-origin export.
import path from 'node:path';
import type { Command } from 'commander';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { formatSize } from '../sizes.ts';

export function register(origin: Command): void {
  clientCommand(origin.command('add'), { json: true })
    .description('add an origin: export an existing file or block device (read-write) as NAME')
    .argument('<name>', 'export name (letters, digits, . _ + -; unique across origins and snapshots)')
    .argument('<path>', 'existing regular file or block device (relative to the current directory)')
    .action(async (name: string, file: string, opts: ClientOptions) => {
      const info = await request(opts, { op: 'origin.add', name, path: path.resolve(file) });
      output(opts, info, (o) => `origin ${o.name} added: ${o.path} (${formatSize(o.sizeBytes)})`);
    });
}
