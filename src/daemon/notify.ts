// systemd readiness: node cannot send datagrams to $NOTIFY_SOCKET, so the daemon runs
// `systemd-notify` (the unit sets NotifyAccess=all so systemd accepts the helper's message and
// MAINPID tells it which process is the service). Without NOTIFY_SOCKET this does nothing.
import { spawn } from 'node:child_process';
import type { Logger } from '../log.ts';

function notify(args: string[], log: Logger): Promise<void> {
  if (!process.env.NOTIFY_SOCKET) return Promise.resolve();
  return new Promise((resolve) => {
    const child = spawn('systemd-notify', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    // Failure to notify is logged, not fatal: systemd's start timeout reports it to the admin.
    child.on('error', (err) => (log.warn({ err }, 'cannot run systemd-notify'), resolve()));
    child.on('close', (code) => {
      if (code !== 0) log.warn({ code, stderr: stderr.trim() }, 'systemd-notify failed');
      resolve();
    });
  });
}

/** Tell systemd the exports are served (Type=notify). */
export function notifyReady(status: string, log: Logger): Promise<void> {
  return notify(['--ready', `--pid=${process.pid}`, `--status=${status}`], log);
}

/** Tell systemd a clean shutdown has begun. */
export function notifyStopping(log: Logger): Promise<void> {
  return notify([`--pid=${process.pid}`, 'STOPPING=1'], log);
}

/** Tell systemd a reload (live restart) has begun; the successor's READY=1 ends it. */
export function notifyReloading(log: Logger): Promise<void> {
  return notify([`--pid=${process.pid}`, 'RELOADING=1'], log);
}
