// nbdsnap detach /dev/nbdX: disconnect a kernel NBD device (nbd-client -d). Needs no daemon.
import type { Command } from 'commander';
import { checkNbdDevice, runNbdClient } from '../nbd-client.ts';

export function register(program: Command): void {
  program
    .command('detach')
    .description('disconnect a kernel NBD device attached with `nbdsnap attach` (nbd-client -d)')
    .argument('<device>', 'NBD device, /dev/nbdN')
    .action(async (device: string) => {
      await runNbdClient(['-d', checkNbdDevice(device)]);
    });
}
