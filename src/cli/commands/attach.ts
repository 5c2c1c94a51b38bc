// nbdsnap attach NAME /dev/nbdX [--connections N] [--timeout S]: connect a kernel NBD device to an
// export through the daemon's NBD Unix socket (nbd-client -unix SOCKET DEVICE -N NAME -b 4096).
import type { Command } from 'commander';
import { clientCommand, request, type ClientOptions } from '../daemon-client.ts';
import { checkNbdDevice, runNbdClient } from '../nbd-client.ts';
import { parseInteger } from '../sizes.ts';

interface AttachOptions extends ClientOptions {
  connections?: string;
  timeout?: string;
}

/** The nbd-client argument vector for an attach. */
export function attachArgs(socket: string, name: string, device: string, connections?: number, timeout?: number): string[] {
  const args = ['-unix', socket, device, '-N', name, '-b', '4096'];
  if (connections !== undefined) args.push('-C', String(connections));
  if (timeout !== undefined) args.push('-t', String(timeout));
  return args;
}

export function register(program: Command): void {
  clientCommand(program.command('attach'))
    .description('attach an export to a kernel NBD device with nbd-client (needs root and the nbd module)')
    .argument('<name>', 'origin or snapshot name')
    .argument('<device>', 'NBD device, /dev/nbdN')
    .option('--connections <n>', 'number of connections (nbd-client -C, 1-16)')
    .option('--timeout <seconds>', 'request timeout in seconds (nbd-client -t)')
    .action(async (name: string, device: string, opts: AttachOptions) => {
      checkNbdDevice(device);
      const connections = opts.connections === undefined ? undefined : parseInteger(opts.connections, '--connections', 1, 16);
      const timeout = opts.timeout === undefined ? undefined : parseInteger(opts.timeout, '--timeout', 1, 86_400);
      await request(opts, { op: 'status', name }); // NOT_FOUND before touching the device
      const info = await request(opts, { op: 'daemon.info' });
      await runNbdClient(attachArgs(info.nbdSocket, name, device, connections, timeout));
    });
}
