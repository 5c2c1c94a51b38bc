// TCP exposure (issue 7): NBD over TCP is off unless asked, and `--listen PORT` binds loopback
// only. Checked from the outside with `ss -ltnp` for the server's PID, for both `serve` and the
// daemon (which also reports its TCP address in daemon.info).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/client.ts';
import { startDaemon } from '../support/daemon-harness.ts';
import { run } from '../support/exec.ts';
import { fuzzTempDir } from '../support/fuzz-nbd-targets.ts';
import { makeImage, startServe } from '../support/serve-process.ts';

const dir = fuzzTempDir('tcp');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Local addresses of the TCP sockets `pid` listens on, e.g. ["127.0.0.1:40123"]. */
async function tcpListeners(pid: number): Promise<string[]> {
  const { stdout } = await run('ss', ['-Hltnp']);
  return stdout.split('\n').filter((l) => l.includes(`pid=${pid},`)).map((l) => l.trim().split(/\s+/)[3]);
}

describe('TCP defaults', () => {
  it('serve: no TCP listener without --listen; --listen 0 binds 127.0.0.1 only', async () => {
    // One image each: one file is served by one nbdsnap process at a time (block/device-claim.ts).
    const unixOnly = await startServe({ image: makeImage(dir, 1024 * 1024, 'a.img'), socket: path.join(dir, 'a.sock') });
    const tcp = await startServe({ image: makeImage(dir, 1024 * 1024, 'b.img'), socket: path.join(dir, 'b.sock'), extra: ['--listen', '0'] });
    try {
      expect(await tcpListeners(unixOnly.proc.pid!)).toEqual([]);
      const listeners = await tcpListeners(tcp.proc.pid!);
      expect(listeners).toHaveLength(1);
      expect(listeners[0]).toMatch(/^127\.0\.0\.1:\d+$/);
    } finally {
      expect((await unixOnly.stop()).code).toBe(0);
      expect((await tcp.stop()).code).toBe(0);
    }
  });

  it('daemon: no TCP listener by default; --listen 0 binds 127.0.0.1 and daemon.info says so', async () => {
    const plain = await startDaemon(path.join(dir, 'd1'), { args: ['--log-level', 'error'] });
    const withTcp = await startDaemon(path.join(dir, 'd2'), { args: ['--log-level', 'error', '--listen', '0'] });
    try {
      expect(await tcpListeners(plain.proc.pid!)).toEqual([]);
      expect((await callDaemon(plain.control, { op: 'daemon.info' })).tcp).toBeNull();
      const listeners = await tcpListeners(withTcp.proc.pid!);
      const info = await callDaemon(withTcp.control, { op: 'daemon.info' });
      expect(info.tcp?.host).toBe('127.0.0.1');
      expect(listeners).toEqual([`127.0.0.1:${info.tcp!.port}`]);
    } finally {
      expect((await plain.stop()).code).toBe(0);
      expect((await withTcp.stop()).code).toBe(0);
    }
  });
});
