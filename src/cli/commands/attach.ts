// nbdsnap attach NAME /dev/nbdX [--connections N] [--timeout S] [--block-size B]: connect a kernel
// NBD device to an export through the daemon's NBD Unix socket
// (nbd-client -unix SOCKET DEVICE -N NAME -b 4096 by default).
import type { Command } from 'commander';
import { clientCommand, request, type ClientOptions } from '../daemon-client.ts';
import { checkNbdDevice, runNbdClient } from '../nbd-client.ts';
import { parseInteger } from '../sizes.ts';
import { CliError, ExitCode } from '../errors.ts';

interface AttachOptions extends ClientOptions {
  connections?: string;
  timeout?: string;
  blockSize?: string;
}

export interface AttachTuning {
  connections?: number;
  timeout?: number;
  /** Logical block size of the kernel device: 512, 1024, 2048 or 4096 (default 4096). */
  blockSize?: number;
}

/** The nbd-client argument vector for an attach. */
export function attachArgs(socket: string, name: string, device: string, tuning: AttachTuning = {}): string[] {
  const args = ['-unix', socket, device, '-N', name, '-b', String(tuning.blockSize ?? 4096)];
  if (tuning.connections !== undefined) args.push('-C', String(tuning.connections));
  if (tuning.timeout !== undefined) args.push('-t', String(tuning.timeout));
  return args;
}

function parseBlockSize(value: string): number {
  const n = parseInteger(value, '--block-size', 512, 4096);
  if ((n & (n - 1)) !== 0) throw new CliError(`--block-size must be 512, 1024, 2048 or 4096, not ${value}`, ExitCode.INVALID);
  return n;
}

export function register(program: Command): void {
  clientCommand(program.command('attach'))
    .description('attach an export to a kernel NBD device with nbd-client (needs root and the nbd module)')
    .argument('<name>', 'origin or snapshot name')
    .argument('<device>', 'NBD device, /dev/nbdN')
    .option('--connections <n>', 'number of connections (nbd-client -C, 1-16)')
    .option('--timeout <seconds>', 'request timeout in seconds (nbd-client -t)')
    .option('--block-size <bytes>', 'logical block size of the device: 512, 1024, 2048 or 4096 (nbd-client -b; default 4096)')
    .action(async (name: string, device: string, opts: AttachOptions) => {
      checkNbdDevice(device);
      const connections = opts.connections === undefined ? undefined : parseInteger(opts.connections, '--connections', 1, 16);
      const timeout = opts.timeout === undefined ? undefined : parseInteger(opts.timeout, '--timeout', 1, 86_400);
      const blockSize = opts.blockSize === undefined ? undefined : parseBlockSize(opts.blockSize);
      await request(opts, { op: 'status', name }); // NOT_FOUND before touching the device
      const info = await request(opts, { op: 'daemon.info' });
      await runNbdClient(attachArgs(info.nbdSocket, name, device, { connections, timeout, blockSize }));
    });
}
