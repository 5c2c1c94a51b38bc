// nbdsnap restart [--wait] [--json] [--timeout S]: live restart (and upgrade) of the daemon. The
// running daemon starts a successor from the code installed now and hands it its sockets and
// every NBD connection; clients see a pause, not a disconnect. systemd's `reload` runs it with
// --wait (the unit's ExecReload).
import type { Command } from 'commander';
import type { RestartResult } from '../../control/api.ts';
import { clientCommand, output, request, type ClientOptions } from '../daemon-client.ts';
import { CliError, ExitCode } from '../errors.ts';

interface RestartOptions extends ClientOptions {
  wait?: boolean;
  timeout?: string;
}

function timeoutMs(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds < 1 || seconds > 3600) throw new CliError(`--timeout must be a number of seconds from 1 to 3600, not ${text}`, ExitCode.USAGE);
  return Math.round(seconds * 1000);
}

function render(r: RestartResult): string {
  if (r.state === 'started') return `restarting: successor pid ${r.pid} started (was ${r.previousPid})`;
  const closed = r.closed ? `, ${r.closed} closed (still negotiating)` : '';
  const relayed = r.relayed ? ` (${r.relayed} using TLS, relayed by pid ${r.previousPid} until they end)` : '';
  return `restarted: pid ${r.previousPid} -> ${r.pid}, ${r.connections ?? 0} connection(s) handed over${relayed}${closed}, longest pause ${r.pauseMs} ms`;
}

export function register(program: Command): void {
  clientCommand(program.command('restart'), { json: true })
    .description(
      'restart the daemon live: a successor started from the code installed now takes over the sockets and every NBD connection (clients see a pause, no disconnect); if it fails, the running daemon goes on',
    )
    .option('--wait', 'return once the successor serves (exit 1 with the reason if it failed); without it, once the successor has started')
    .option('--timeout <seconds>', 'how long the successor may take to serve before it is given up (default 120)')
    .addHelpText('after', `
The PID of the daemon changes (see --json, or \`nbdsnap status\`); under systemd the successor
becomes the unit's main process. A connection still negotiating after a short wait is closed
(its client may connect again). A TLS connection's keys cannot leave the process that made them:
the old process hands the successor a plaintext socket in its place and stays, relaying the
connection, until the last such connection ends (it holds nothing else: no store, no listener).
Control requests made during the restart are answered by the successor.
Exit codes: 0 done, 1 the successor failed (the old daemon still serves), 6 no daemon.`)
    .action(async (opts: RestartOptions) => {
      const result = await request(opts, { op: 'daemon.restart', wait: opts.wait ?? false, timeoutMs: timeoutMs(opts.timeout) });
      output(opts, result, render);
    });
}
