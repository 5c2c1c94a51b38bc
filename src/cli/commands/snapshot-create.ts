// nbdsnap snapshot create NAME --origin ORIGIN (--cow PATH | --size SIZE) [--persistent P|PO|N] [--chunk-size SECTORS]
//   [--autoextend-threshold PCT] [--autoextend-percent PCT]
import path from 'node:path';
import type { Command } from 'commander';
import { AUTOEXTEND_LIMITS } from '../../common/autoextend.ts';
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
  autoextendThreshold?: string;
  autoextendPercent?: string;
}

function parsePercent(text: string | undefined, flag: string, limits: { min: number; max: number }): number | undefined {
  return text === undefined ? undefined : parseInteger(text.replace(/%$/, ''), flag, limits.min, limits.max);
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
    .option('--autoextend-threshold <pct>', "grow the COW file when Data% reaches this (1-100; 100 = never; default: the daemon's, off unless configured). Only with --size")
    .option('--autoextend-percent <pct>', "grow it by this percent of its size each time (default: the daemon's, 20)")
    .addHelpText(
      'after',
      `
Auto-extend works as LVM's snapshot_autoextend_threshold/percent: checked at every allocation, so a
COW file nbdsnap created grows before it fills; growth is logged, and shown by snapshot list (COW)
and --json (autoextend). If the file system itself is full, the snapshot is invalidated as the
kernel would, and the origin keeps working. Grow by hand with: nbdsnap snapshot resize NAME --size +1G`,
    )
    .action(async (name: string, opts: CreateOptions) => {
      if ((opts.cow === undefined) === (opts.size === undefined)) {
        throw new CliError('give exactly one of --cow PATH and --size SIZE', ExitCode.USAGE);
      }
      const autoextendThreshold = parsePercent(opts.autoextendThreshold, '--autoextend-threshold', AUTOEXTEND_LIMITS.threshold);
      const autoextendPercent = parsePercent(opts.autoextendPercent, '--autoextend-percent', AUTOEXTEND_LIMITS.percent);
      if (opts.cow !== undefined && (autoextendThreshold !== undefined || autoextendPercent !== undefined)) {
        throw new CliError('--autoextend-*: auto-extend grows only a COW file nbdsnap creates (--size); grow an external --cow yourself', ExitCode.USAGE);
      }
      const info = await request(opts, {
        op: 'snapshot.create',
        name,
        origin: opts.origin,
        ...(opts.cow !== undefined ? { cow: path.resolve(opts.cow) } : { sizeBytes: parseSize(opts.size!, '--size') }),
        kind: parseKind(opts.persistent),
        chunkSectors: parseInteger(opts.chunkSize, '--chunk-size', 0, Number.MAX_SAFE_INTEGER),
        autoextendThreshold,
        autoextendPercent,
      });
      output(opts, info, (s) => `snapshot ${s.name} of ${s.origin} created: ${s.kind} ${s.chunkSectors}, COW ${s.cowPath} (${formatSize(s.cowSizeBytes ?? 0)})`);
    });
}
