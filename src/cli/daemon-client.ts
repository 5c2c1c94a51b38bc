// What every client command shares: the --control option and one call to the daemon, with the
// control API's error codes mapped to the CLI's exit codes (one line on stderr, no stack).
import type { Command } from 'commander';
import { callDaemon, DaemonUnreachableError } from '../control/client.ts';
import { ControlError, type ErrorCode, type Op, type Request, type ResultMap } from '../control/api.ts';
import { defaultControlPath } from '../control/defaults.ts';
import { CliError, ExitCode } from './errors.ts';

export interface ClientOptions {
  control?: string;
  json?: boolean;
}

const EXIT_FOR: Record<ErrorCode, number> = {
  BAD_REQUEST: ExitCode.INVALID,
  INVALID: ExitCode.INVALID,
  NOT_FOUND: ExitCode.NOT_FOUND,
  EXISTS: ExitCode.EXISTS,
  BUSY: ExitCode.BUSY,
  SHUTTING_DOWN: ExitCode.DAEMON_UNREACHABLE,
  RESTARTING: ExitCode.DAEMON_UNREACHABLE,
  RESTART_FAILED: ExitCode.FAILURE,
  INTERNAL: ExitCode.FAILURE,
};

/** How long a request refused with RESTARTING (a live restart in progress) is retried. */
const RESTART_RETRY_MS = 120_000;
const RESTART_RETRY_STEP_MS = 100;

/** Add --control to a client command (and --json to read commands). */
export function clientCommand(cmd: Command, opts: { json?: boolean } = {}): Command {
  cmd.option('--control <path>', 'control socket of the daemon (default: $NBDSNAP_CONTROL or <data-dir>/control.sock)');
  if (opts.json) cmd.option('--json', 'print machine-readable JSON instead of text');
  return cmd;
}

export function controlPath(opts: ClientOptions): string {
  return opts.control ?? defaultControlPath();
}

/** One call to the daemon; a request that met a live restart is sent again to the successor. */
async function callRetrying<K extends Op>(socket: string, req: Request<K>): Promise<ResultMap[K]> {
  const until = Date.now() + RESTART_RETRY_MS;
  for (;;) {
    try {
      return await callDaemon<K>(socket, req);
    } catch (err) {
      if (!(err instanceof ControlError && err.code === 'RESTARTING') || Date.now() > until) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, RESTART_RETRY_STEP_MS));
  }
}

export async function request<K extends Op>(opts: ClientOptions, req: Request<K>): Promise<ResultMap[K]> {
  try {
    return await callRetrying<K>(controlPath(opts), req);
  } catch (err) {
    if (err instanceof ControlError) throw new CliError(err.message, EXIT_FOR[err.code], { cause: err });
    if (err instanceof DaemonUnreachableError) throw new CliError(err.message, ExitCode.DAEMON_UNREACHABLE, { cause: err });
    throw err;
  }
}

/** Print `value` as JSON (--json) or as the text `render` makes. */
export function output<T>(opts: ClientOptions, value: T, render: (value: T) => string): void {
  const text = opts.json ? JSON.stringify(value, null, 2) : render(value);
  if (text !== '') process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}
