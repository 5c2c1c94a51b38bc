// The nbdsnap command line: parses arguments with commander and calls a programmatic API.
// Every command module exports register(program); errors are printed once, here.
import { Command, CommanderError } from 'commander';
import { CliError, ExitCode } from './errors.ts';
import { register as registerServe } from './commands/serve.ts';
import { register as registerDaemon } from './commands/daemon.ts';
import { register as registerOriginAdd } from './commands/origin-add.ts';
import { register as registerOriginRemove } from './commands/origin-remove.ts';
import { register as registerOriginList } from './commands/origin-list.ts';
import { register as registerSnapshotCreate } from './commands/snapshot-create.ts';
import { register as registerSnapshotRemove } from './commands/snapshot-remove.ts';
import { register as registerSnapshotList } from './commands/snapshot-list.ts';
import { register as registerSnapshotResize } from './commands/snapshot-resize.ts';
import { register as registerSnapshotDiff } from './commands/snapshot-diff.ts';
import { register as registerSnapshotMerge } from './commands/snapshot-merge.ts';
import { register as registerStatus } from './commands/status.ts';
import { register as registerTable } from './commands/table.ts';
import { register as registerAttach } from './commands/attach.ts';
import { register as registerDetach } from './commands/detach.ts';
import { register as registerRestart } from './commands/restart.ts';

const EXIT_CODES_HELP = `
Exit codes:
  0 ok                       4 already exists (name, path or COW file)
  1 failure                  5 busy (snapshots or connected clients; see --force)
  2 usage (bad arguments)    6 daemon unreachable (not running? --control / $NBDSNAP_CONTROL)
  3 no such origin/snapshot  7 invalid value (name, size, chunk size, path)
                             8 nbd-client failed or missing
Client commands find the daemon at --control PATH, $NBDSNAP_CONTROL, or <data-dir>/control.sock.`;

export function buildProgram(): Command {
  const program = new Command('nbdsnap')
    .description('Userspace device-mapper snapshots (snapshot-origin and snapshot) served over NBD')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES_HELP);
  registerServe(program);
  registerDaemon(program);
  const origin = program.command('origin').description('add, remove and list origins');
  for (const register of [registerOriginAdd, registerOriginRemove, registerOriginList]) register(origin);
  const snapshot = program.command('snapshot').description('create, remove, list, resize, diff and merge snapshots');
  for (const register of [registerSnapshotCreate, registerSnapshotRemove, registerSnapshotList, registerSnapshotResize, registerSnapshotDiff, registerSnapshotMerge]) register(snapshot);
  for (const register of [registerStatus, registerTable, registerAttach, registerDetach, registerRestart]) register(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed help/version or the usage error.
      return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    if (err instanceof CliError) {
      process.stderr.write(`nbdsnap: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`nbdsnap: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return ExitCode.FAILURE;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
