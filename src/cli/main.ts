// The nbdsnap command line: parses arguments with commander and calls a programmatic API.
// Every command module exports register(program); errors are printed once, here.
import { Command, CommanderError } from 'commander';
import { CliError, ExitCode } from './errors.ts';
import { register as registerServe } from './commands/serve.ts';

export function buildProgram(): Command {
  const program = new Command('nbdsnap')
    .description('Userspace device-mapper snapshots (snapshot-origin and snapshot) served over NBD')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');
  registerServe(program);
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
