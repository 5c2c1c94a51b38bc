// `nbdsnap serve PATH --socket SOCK`: a foreground NBD server for one file or block device
// (a "linear" export), like `nbdkit file` or `qemu-nbd`. Runs until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { DeviceInUseError } from '../../block/device-claim.ts';
import { FileDevice } from '../../block/file-device.ts';
import { errorText } from '../../common/error-text.ts';
import { createLogger } from '../../log.ts';
import { staticExports, type NbdExport } from '../../nbd/exports.ts';
import { tuneRuntimeForNbd } from '../../nbd/runtime-tuning.ts';
import { NbdServer } from '../../nbd/server.ts';
import { loadTlsSettings } from '../../nbd/tls-credentials.ts';
import { CliError, ExitCode } from '../errors.ts';
import { TLS_HELP, addTlsOptions, type TlsFlags } from '../tls-options.ts';

export interface ServeOptions extends TlsFlags {
  socket: string;
  name?: string;
  readOnly?: boolean;
  listen?: string;
  handshakeTimeout?: string;
}

/** Parse `PORT`, `HOST:PORT` or `[V6]:PORT`; the host defaults to 127.0.0.1. */
export function parseListen(spec: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(spec);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new CliError(`invalid --listen ${JSON.stringify(spec)}: expected [HOST:]PORT`, ExitCode.USAGE);
  return { host: match[1] ?? match[2] ?? '127.0.0.1', port };
}

function parseSeconds(text: string): number {
  const seconds = Number(text);
  if (!(seconds > 0)) throw new CliError(`invalid --handshake-timeout ${JSON.stringify(text)}: expected seconds > 0`, ExitCode.USAGE);
  return seconds;
}

function openDevice(path: string, readOnly: boolean): FileDevice {
  try {
    return FileDevice.open(path, { readOnly });
  } catch (err) {
    const exitCode = err instanceof DeviceInUseError ? ExitCode.BUSY : ExitCode.NOT_FOUND;
    throw new CliError(`cannot open ${path}: ${errorText(err)}`, exitCode, { cause: err });
  }
}

/** Resolves on the first SIGINT/SIGTERM; later ones are logged and ignored while shutting down. */
function waitForSignal(onRepeat: (signal: string) => void): Promise<string> {
  return new Promise((resolve) => {
    let first: string | undefined;
    const onSignal = (signal: string): void => {
      if (first !== undefined) return onRepeat(signal);
      first = signal;
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

async function listen(server: NbdServer, opts: ServeOptions): Promise<void> {
  try {
    await server.listenUnix(opts.socket);
    if (opts.listen !== undefined) {
      const { host, port } = parseListen(opts.listen);
      await server.listenTcp(host, port);
    }
  } catch (err) {
    await server.close();
    if (err instanceof CliError) throw err;
    throw new CliError(`cannot listen: ${errorText(err)}`, ExitCode.FAILURE, { cause: err });
  }
}

/** Serve `path` until a signal arrives, then shut down cleanly. */
export async function serve(path: string, opts: ServeOptions): Promise<void> {
  tuneRuntimeForNbd(); // before the first asynchronous fs call
  if (opts.listen !== undefined) parseListen(opts.listen); // reject bad arguments before opening anything
  if (opts.handshakeTimeout !== undefined) parseSeconds(opts.handshakeTimeout);
  const tls = loadTlsSettings(opts, (message, cause) => new CliError(message, ExitCode.USAGE, { cause }));
  const device = openDevice(path, opts.readOnly ?? false);
  const logger = createLogger();
  const exports: NbdExport[] = [{ name: '', device, readOnly: opts.readOnly }];
  if (opts.name) exports.push({ name: opts.name, device, readOnly: opts.readOnly });
  const limits = opts.handshakeTimeout === undefined ? {} : { handshakeTimeoutMs: parseSeconds(opts.handshakeTimeout) * 1000 };
  const server = new NbdServer({ exports: staticExports(exports), logger, limits, tls });
  try {
    await listen(server, opts);
    logger.info({ path, size: device.size, name: opts.name ?? '' }, 'serving');
    const signal = await waitForSignal((again) => logger.warn({ signal: again }, 'already shutting down'));
    logger.info({ signal }, 'shutting down');
    await server.close();
  } finally {
    await device.close();
  }
}

export function register(program: Command): void {
  addTlsOptions(program.command('serve'))
    .summary('serve a file or block device over NBD (foreground)')
    .description(
      'Serve PATH (a regular file or a block device) over NBD until SIGINT/SIGTERM, like `nbdkit file`. ' +
        'It is the default export ("") and, with --name, also the export NAME. All connections share one ' +
        'descriptor, so multi-conn clients are safe; FLUSH and FUA use fdatasync. Logs go to stderr.',
    )
    .argument('<path>', 'file or block device to serve')
    .requiredOption('--socket <path>', 'Unix socket to listen on (created 0600; a stale socket is replaced)')
    .option('--name <name>', 'also serve the device under this export name')
    .option('--read-only', 'refuse writes (READ_ONLY flag; writes get EPERM)')
    .option('--listen <[host:]port>', 'also listen on TCP (host defaults to 127.0.0.1; [::1]:PORT for IPv6)')
    .option('--handshake-timeout <seconds>', 'drop clients that have not finished negotiating by then (default 30)')
    .addHelpText('after', `${TLS_HELP}\n\nExample:\n  nbdsnap serve disk.img --socket /tmp/disk.sock &\n  nbdinfo "nbd+unix:///?socket=/tmp/disk.sock"\n`)
    .action(async (path: string, opts: ServeOptions) => serve(path, opts));
}
