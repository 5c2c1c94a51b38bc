// The systemd unit passes `systemd-analyze verify` (with ExecStart pointed at this checkout), and
// the daemon reports READY=1 (and STOPPING=1) to $NOTIFY_SOCKET through systemd-notify. systemd
// is not PID 1 here, so a Python datagram listener stands in for it.
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { ROOT, startDaemon, tempDir } from '../support/daemon-harness.ts';

const UNIT = path.join(ROOT, 'scripts/systemd/nbdsnap.service');
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const dir = tempDir('daemon-unit-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function verify(text: string): { status: number | null; stderr: string } {
  const file = path.join(dir, 'nbdsnap.service');
  fs.writeFileSync(file, text);
  const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr + r.stdout };
}

/** The installed form: /opt/nbdsnap replaced by the checkout, as the install notes say. */
const installed = () => fs.readFileSync(UNIT, 'utf8').replaceAll('/opt/nbdsnap', ROOT);

describe('systemd unit', () => {
  it('has systemd-analyze to check with (npm test installs systemd)', () => {
    expect(hasAnalyze).toBe(true);
  });

  it('passes systemd-analyze verify without a single warning', () => {
    const text = installed();
    expect(text).toMatch(new RegExp(`^ExecStart=${ROOT}/bin/nbdsnap daemon`, 'm'));
    expect(text).toMatch(/^Type=notify$/m);
    expect(text).toMatch(/^NotifyAccess=all$/m);
    expect(text).toMatch(new RegExp(`^ExecReload=${ROOT}/bin/nbdsnap restart --wait`, 'm'));
    expect(verify(text)).toEqual({ status: 0, stderr: '' });
  });

  it('would catch a broken unit (the check can fail)', () => {
    expect(verify(installed().replace('Type=notify', 'Type=notifyy')).stderr).toMatch(/Failed to parse service type/);
    expect(verify(fs.readFileSync(UNIT, 'utf8').replace('/opt/nbdsnap', '/nonexistent')).status).not.toBe(0);
  });
});

const LISTENER = `
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(64))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % 4])
            for fd in fds:
                os.close(fd)  # releases systemd-notify's barrier
    print(msg.decode().replace("\\n", " "), flush=True)
`;

describe('systemd notification', () => {
  it('sends READY=1 with MAINPID once served, and STOPPING=1 on SIGTERM', async () => {
    const socketPath = path.join(dir, 'notify.sock');
    const listener = spawn('python3', ['-c', LISTENER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    let heard = '';
    listener.stdout.on('data', (b) => (heard += b));
    try {
      await expect.poll(() => heard, { timeout: 10_000 }).toMatch(/listening/);
      const d = await startDaemon(dir, { env: { NOTIFY_SOCKET: socketPath } });
      await expect.poll(() => heard, { timeout: 20_000, message: 'READY' }).toMatch(new RegExp(`READY=1.*MAINPID=${d.proc.pid}|MAINPID=${d.proc.pid}.*READY=1`));
      expect(heard).toMatch(/STATUS=serving 0 exports/);
      const exit = await d.stop();
      expect(exit, d.log()).toEqual({ code: 0, signal: null });
      await expect.poll(() => heard, { timeout: 20_000, message: `STOPPING in ${heard}\n${d.log()}` }).toMatch(/STOPPING=1/);
    } finally {
      listener.kill();
    }
  });

  it('on reload (live restart): RELOADING=1 from the old daemon, then READY=1 with the successor as MAINPID', async () => {
    const socketPath = path.join(dir, 'notify-reload.sock');
    const listener = spawn('python3', ['-c', LISTENER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    let heard = '';
    listener.stdout.on('data', (b) => (heard += b));
    let successor = 0;
    try {
      await expect.poll(() => heard, { timeout: 10_000 }).toMatch(/listening/);
      const d = await startDaemon(path.join(dir, 'reload'), { env: { NOTIFY_SOCKET: socketPath } });
      await expect.poll(() => heard, { timeout: 20_000 }).toMatch(/READY=1/);
      const r = await d.ok('restart', '--wait', '--json');
      successor = r.pid;
      expect(r.previousPid).toBe(d.proc.pid);
      expect(await d.exited).toEqual({ code: 0, signal: null });
      const after = heard.slice(heard.indexOf('READY=1') + 1);
      expect(after).toMatch(new RegExp(`RELOADING=1`));
      await expect.poll(() => heard.slice(heard.indexOf('RELOADING=1')), { timeout: 20_000 }).toMatch(new RegExp(`READY=1.*MAINPID=${successor}|MAINPID=${successor}.*READY=1`));
    } finally {
      if (successor) process.kill(successor, 'SIGTERM');
      listener.kill();
    }
  });
});
