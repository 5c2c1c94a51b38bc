// nbdsnap snapshot merge NAME [--wait] [--json] [--force]: roll the origin back to the snapshot
// (lvconvert --merge). Returns once the origin shows the snapshot's content; --wait follows the
// merge to its end: a progress bar on a terminal, one JSON line per update with --json.
import type { Command } from 'commander';
import type { SnapshotInfo } from '../../control/api.ts';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { CliError, ExitCode } from '../errors.ts';
import { formatSize } from '../sizes.ts';

interface MergeOptions extends ClientOptions {
  wait?: boolean;
  force?: boolean;
}

/** How often --wait asks the daemon for progress. */
const POLL_MS = 500;

interface Progress {
  name: string;
  origin: string;
  state: 'merging' | 'merged' | 'merge-failed';
  percent: number;
  mergedBytes: number;
  totalBytes: number;
  bytesPerSecond: number | null;
  etaSeconds: number | null;
  error?: string;
}

async function current(opts: MergeOptions, name: string, origin: string): Promise<SnapshotInfo | undefined> {
  const list = await request(opts, { op: 'snapshot.list', origin });
  return list.find((s) => s.name === name);
}

function duration(seconds: number): string {
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function bar(p: Progress): string {
  const width = 30;
  const filled = Math.round((p.percent / 100) * width);
  const rate = p.bytesPerSecond === null ? '' : `  ${formatSize(p.bytesPerSecond)}/s`;
  const eta = p.etaSeconds === null ? '' : `  ${duration(p.etaSeconds)} left`;
  return `\rmerging ${p.name} into ${p.origin} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${p.percent.toFixed(2)}%${rate}${eta}   `;
}

/** Follow the merge until the snapshot is gone (merged) or its merge failed. */
async function follow(opts: MergeOptions, first: SnapshotInfo): Promise<void> {
  const started = Date.now();
  const startBytes = first.merge?.mergedBytes ?? 0;
  const totalBytes = first.merge?.totalBytes ?? 0;
  const tty = process.stderr.isTTY && !opts.json;
  const report = (p: Progress) => {
    if (opts.json) process.stdout.write(`${JSON.stringify(p)}\n`);
    else if (tty) process.stderr.write(bar(p));
  };
  for (;;) {
    const info = await current(opts, first.name, first.origin);
    const base = { name: first.name, origin: first.origin, totalBytes };
    if (!info) {
      report({ ...base, state: 'merged', percent: 100, mergedBytes: totalBytes, bytesPerSecond: null, etaSeconds: 0 });
      if (tty) process.stderr.write('\n');
      if (!opts.json) process.stdout.write(`merged ${first.name} into ${first.origin}: the snapshot is removed\n`);
      return;
    }
    const merged = info.merge?.mergedBytes ?? 0;
    const seconds = (Date.now() - started) / 1000;
    const rate = seconds > 0.2 ? (merged - startBytes) / seconds : null;
    const eta = rate && rate > 0 ? (totalBytes - merged) / rate : null;
    const p: Progress = { ...base, state: info.state === 'merge-failed' ? 'merge-failed' : 'merging', percent: info.merge?.percent ?? 0, mergedBytes: merged, bytesPerSecond: rate, etaSeconds: eta };
    if (info.state === 'merge-failed') {
      report({ ...p, error: info.error ?? 'Merge failed' });
      if (tty) process.stderr.write('\n');
      throw new CliError(`merging ${first.name} into ${first.origin} failed: ${info.error ?? 'Merge failed'} (the origin still shows the snapshot; restarting the daemon retries)`, ExitCode.FAILURE);
    }
    report(p);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

export function register(snapshot: Command): void {
  clientCommand(snapshot.command('merge'), { json: true })
    .description('roll the origin back to this snapshot, online (lvconvert --merge): the origin shows its content at once; the snapshot is removed when done')
    .argument('<name>', 'snapshot name (P or PO, valid)')
    .option('--wait', 'follow the merge to its end (progress bar on a terminal, JSON lines with --json)')
    .option('--force', "disconnect the snapshot's connected clients (a merging snapshot is no longer served)")
    .addHelpText(
      'after',
      `
As the kernel's snapshot-merge: from the moment this returns, the origin export reads as the
snapshot, its clients keep reading and writing (no disconnect), other snapshots keep their point
in time, and the snapshot's own export stops serving. Chunks go back to the origin in the
background; snapshot list shows MERGE% and state merging, status shows the origin as
snapshot-merge. A merge survives a daemon restart or crash: it resumes at the next start. When it
is done the snapshot is removed (and its COW file deleted if nbdsnap created it), as LVM does.
Refused (exit 7) for a transient (N), invalid, overflowed or already merging snapshot; exit 5 if
clients are connected to it (see --force).`,
    )
    .action(async (name: string, opts: MergeOptions) => {
      const info = await request(opts, { op: 'snapshot.merge', name, force: opts.force === true });
      if (!opts.wait) {
        output(opts, info, (s) => `merging ${s.name} into ${s.origin}: ${formatSize(s.merge?.totalBytes ?? 0)} to go back; the origin shows the snapshot now (snapshot list shows MERGE%)`);
        return;
      }
      await follow(opts, info);
    });
}
