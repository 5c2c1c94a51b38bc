// nbdsnap snapshot diff NAME [--json]: what changed since the snapshot was taken (in the origin or
// in the snapshot), as merged byte extents. Text: one "OFFSET LENGTH" line per extent on stdout,
// for `while read offset length`, and a summary on stderr. JSON: the SnapshotDiff object.
import type { Command } from 'commander';
import type { SnapshotDiff } from '../../control/api.ts';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { formatSize } from '../sizes.ts';

function summary(d: SnapshotDiff): string {
  const percent = d.sizeBytes === 0 ? 0 : (100 * d.changedBytes) / d.sizeBytes;
  return `snapshot ${d.name} (of ${d.origin}): ${d.extents.length} extent${d.extents.length === 1 ? '' : 's'}, ${formatSize(d.changedBytes)} changed of ${formatSize(d.sizeBytes)} (${percent.toFixed(2)}%), chunk ${formatSize(d.chunkBytes)}`;
}

export function register(snapshot: Command): void {
  clientCommand(snapshot.command('diff'), { json: true })
    .description('list what changed since a snapshot was taken, in its origin or in itself: "OFFSET LENGTH" lines in bytes (summary on stderr)')
    .argument('<name>', 'snapshot name')
    .addHelpText(
      'after',
      `
The extents are the snapshot's exceptions, in its chunk size, merged. Read after a later snapshot
was taken, they cover every chunk where the two differ (docs/incremental-backup.md). The same map
is served over NBD as the metadata context qemu:dirty-bitmap:NAME.
--json prints {name, origin, sizeBytes, chunkBytes, changedBytes, extents: [{offset, length}]}.`,
    )
    .action(async (name: string, opts: ClientOptions) => {
      const diff = await request(opts, { op: 'snapshot.diff', name });
      output(opts, diff, (d) => d.extents.map((e) => `${e.offset} ${e.length}`).join('\n'));
      if (!opts.json) process.stderr.write(summary(diff) + '\n');
    });
}
