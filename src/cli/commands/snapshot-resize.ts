// nbdsnap snapshot resize NAME --size SIZE|+SIZE: grow a snapshot's COW file (like lvextend of a
// snapshot LV); the snapshot uses the room at its next allocation, online.
import type { Command } from 'commander';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { formatPercent } from '../format.ts';
import { formatSize, parseSize } from '../sizes.ts';

export function register(snapshot: Command): void {
  clientCommand(snapshot.command('resize'), { json: true })
    .description("grow a snapshot's COW file, online (lvextend of a snapshot): --size 2G sets the size, --size +1G adds to it")
    .argument('<name>', 'snapshot name')
    .requiredOption('--size <size>', 'new COW size (512K, 64M, 1G, ...), or +SIZE to add that much; a COW never shrinks')
    .addHelpText(
      'after',
      `
A COW block device (--cow /dev/...) is not resized by nbdsnap: grow the device itself (lvextend,
...) and the snapshot uses the new size at once. An invalid or overflowed snapshot stays so.`,
    )
    .action(async (name: string, opts: ClientOptions & { size: string }) => {
      const text = opts.size.trim();
      const grow = text.startsWith('+');
      const bytes = parseSize(grow ? text.slice(1) : text, '--size');
      const info = await request(opts, { op: 'snapshot.resize', name, ...(grow ? { growBytes: bytes } : { sizeBytes: bytes }) });
      output(opts, info, (s) => `snapshot ${s.name}: COW ${s.cowPath} is now ${formatSize(s.cowSizeBytes ?? 0)} (Data% ${formatPercent(s.dataPercent)})`);
    });
}
