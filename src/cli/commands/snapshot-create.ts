// nbdsnap snapshot create NAME --origin ORIGIN (--cow PATH | --size SIZE) [--persistent P|PO|N] [--chunk-size SECTORS]
import path from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_CHUNK_SECTORS } from '../../common/chunk-sectors.ts';
import { SECTOR_BYTES } from '../../common/sectors.ts';
import { DEFAULT_SNAPSHOT_KIND, isSnapshotKind, type SnapshotKind } from '../../common/snapshot-kind.ts';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { CliError, ExitCode } from '../errors.ts';
import { formatSize, parseInteger, parseSize } from '../sizes.ts';

interface CreateOptions extends ClientOptions {
  origin: string;
  cow?: string;
  size?: string;
  persistent: string;
  chunkSize: string;
}

function parseKind(text: string): SnapshotKind {
  const kind = text.toUpperCase();
  if (!isSnapshotKind(kind)) {
    throw new CliError(`--persistent: must be P (persistent), PO (persistent with overflow) or N (transient), not ${JSON.stringify(text)}`, ExitCode.INVALID);
  }
  return kind;
}

export function register(snapshot: Command): void {
  clientCommand(snapshot.command('create'), { json: true })
    .description('take a snapshot of an origin now and export it (writable) as NAME')
    .argument('<name>', 'export name (letters, digits, . _ + -; unique across origins and snapshots)')
    .requiredOption('--origin <origin>', 'the origin to snapshot')
    .option('--cow <path>', 'existing file or block device for the COW store, used as it is: a dm-snapshot store keeps its exceptions, a zeroed one is initialised; never deleted by nbdsnap')
    .option('--size <size>', 'create a new COW file <data-dir>/cow/NAME.cow of this size (512K, 64M, 1G, ...); deleted when the snapshot is removed')
    .option('--persistent <P|PO|N>', 'store type: P persistent, PO persistent with overflow, N transient', DEFAULT_SNAPSHOT_KIND)
    .option('--chunk-size <sectors>', `chunk size in ${SECTOR_BYTES}-byte sectors: a power of two (an existing store keeps its own)`, String(DEFAULT_CHUNK_SECTORS))
    .action(async (name: string, opts: CreateOptions) => {
      if ((opts.cow === undefined) === (opts.size === undefined)) {
        throw new CliError('give exactly one of --cow PATH and --size SIZE', ExitCode.USAGE);
      }
      const info = await request(opts, {
        op: 'snapshot.create',
        name,
        origin: opts.origin,
        ...(opts.cow !== undefined ? { cow: path.resolve(opts.cow) } : { sizeBytes: parseSize(opts.size!, '--size') }),
        kind: parseKind(opts.persistent),
        chunkSectors: parseInteger(opts.chunkSize, '--chunk-size', 0, Number.MAX_SAFE_INTEGER),
      });
      output(opts, info, (s) => `snapshot ${s.name} of ${s.origin} created: ${s.kind} ${s.chunkSectors}, COW ${s.cowPath} (${formatSize(s.cowSizeBytes ?? 0)})`);
    });
}
