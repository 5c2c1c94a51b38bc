// What a daemon crash does to an attached /dev/nbdX (issue 14), found out against this kernel
// (6.1) and nbd-client (3.24): for netlink and ioctl mode, with and without -persist, the daemon
// is SIGKILLed under an attached device, a read is tried while it is down, the daemon is started
// again, and a read is tried again (for 30 s, so that a reconnecting client has time). The test
// asserts what README's "What a crash does to an attached device" states:
// - netlink mode (nbd-client's default), with or without -persist: the device stays attached but
//   dead: every I/O fails with EIO, also once the daemon is back, until it is detached and
//   attached again;
// - ioctl mode (-nonetlink), with or without -persist: the device is detached at once, and
//   nbd-client does not bring it back.
// So no mode reconnects, and `nbdsnap attach` has no --persist; `nbdsnap restart` is the way to
// replace the daemon under attached devices.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { NbdsnapDaemon, freeNbd, nbdConnected, nbdDetach, nbdSectors, run, waitFor, zeroFile, log } from './guest.ts';

interface Mode {
  name: string;
  args: string[];
}

const ALL_MODES: Mode[] = [
  { name: 'netlink', args: [] },
  { name: 'netlink -persist', args: ['-persist'] },
  { name: 'ioctl', args: ['-nonetlink'] },
  { name: 'ioctl -persist', args: ['-nonetlink', '-persist'] },
];
/**
 * The suite runs the default mode and the one most likely to reconnect (each costs two daemon
 * starts under emulation); NBDSNAP_VM_CRASH_MODES=all runs all four, as for the README table.
 */
const MODES = process.env.NBDSNAP_VM_CRASH_MODES === 'all' ? ALL_MODES : [ALL_MODES[0], ALL_MODES[3]];

/** One 4 KiB O_DIRECT read of the device: 'ok', 'EIO'-like error text, or 'hang' (no answer in `ms`). */
function probe(dev: string, ms = 8000): string {
  if (!nbdConnected(dev) || nbdSectors(dev) === 0) return 'detached';
  const r = run('timeout', [String(ms / 1000), 'dd', `if=${dev}`, 'of=/dev/null', 'bs=4096', 'count=1', 'iflag=direct', 'status=none'], { allowFail: true, timeoutMs: ms + 5000 });
  if (r.code === 0) return 'ok';
  if (r.code === 124) return 'hang';
  return (r.stderr.trim().split(': ').pop() ?? `exit ${r.code}`).slice(0, 40);
}

export interface CrashOutcome {
  mode: string;
  whileDown: string;
  afterRestart: string;
  connectedAfter: boolean;
}

export async function nbdsnapCrashAttach(dir: string): Promise<CrashOutcome[]> {
  const outcomes: CrashOutcome[] = [];
  for (const mode of MODES) {
    const d = path.join(dir, mode.name.replace(/[^a-z]+/g, '-'));
    let daemon = await new NbdsnapDaemon(path.join(d, 'daemon')).start();
    const dev = freeNbd();
    let client: ReturnType<typeof spawn> | undefined;
    try {
      daemon.cli('origin', 'add', 'co', zeroFile(path.join(d, 'origin.img'), 64 << 20));
      const args = ['-unix', daemon.nbdSocket, dev, '-N', 'co', '-b', '4096', ...mode.args];
      if (mode.args.includes('-persist') && mode.args.includes('-nonetlink')) {
        // ioctl mode with -persist stays in the foreground watching the connection: keep it as a child.
        client = spawn('nbd-client', [...args, '-nofork'], { stdio: 'ignore' });
      } else {
        run('nbd-client', args);
      }
      await waitFor(`${dev} to connect`, () => nbdConnected(dev) && nbdSectors(dev) > 0, 30_000);
      const before = probe(dev);
      if (before !== 'ok') throw new Error(`${mode.name}: read before the crash: ${before}`);
      const pid = daemon.pid!;
      process.kill(pid, 'SIGKILL');
      await waitFor('the daemon to die', () => !fs.existsSync(`/proc/${pid}/status`) || /State:\s+Z/.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8')), 10_000);
      const whileDown = probe(dev);
      await daemon.stop().catch(() => undefined);
      daemon = await new NbdsnapDaemon(path.join(d, 'daemon')).start();
      // A reconnecting client (-persist) needs a moment to notice the socket is back: poll, bounded.
      let afterRestart = probe(dev);
      const until = Date.now() + 30_000;
      while (afterRestart !== 'ok' && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        afterRestart = probe(dev, 3000);
      }
      const outcome = { mode: mode.name, whileDown, afterRestart, connectedAfter: nbdConnected(dev) };
      outcomes.push(outcome);
      const netlink = !mode.args.includes('-nonetlink');
      const expected = netlink
        ? whileDown === 'Input/output error' && afterRestart === 'Input/output error' && outcome.connectedAfter
        : afterRestart === 'detached' && !outcome.connectedAfter;
      if (!expected) throw new Error(`${mode.name}: ${JSON.stringify(outcome)} is not what README states (netlink: EIO and attached; ioctl: detached)`);
      log(`${mode.name}: read while the daemon is down: ${whileDown}; after it is back: ${afterRestart}; device ${nbdConnected(dev) ? 'still attached' : 'detached'}`);
    } finally {
      client?.kill('SIGTERM');
      await nbdDetach(dev).catch(() => undefined);
      run('nbd-client', ['-d', dev], { allowFail: true });
      await daemon.stop().catch(() => undefined);
    }
  }
  return outcomes;
}
