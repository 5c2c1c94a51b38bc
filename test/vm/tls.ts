// The kernel's nbd driver over TLS (issue 15): `nbdsnap daemon --tls require` with X.509 and client
// certificates on TCP 127.0.0.1 inside the guest; `nbd-client -certfile -keyfile -cacertfile`
// attaches the origin as /dev/nbdX (nbd-client keeps a userspace TLS proxy between the kernel and
// the server). Raw data (O_DIRECT) and an ext4 file system go through it; a plaintext nbd-client
// is refused, and the daemon's log says so.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { makeTlsFixtures } from '../support/tls-certs.ts';
import { NbdsnapDaemon, freeNbd, freshDir, nbdConnected, nbdDetach, nbdSectors, run, waitFor, zeroFile } from './guest.ts';
import { readAt, sha256Of } from './workload.ts';

const PORT = '10811';
const MiB = 1024 * 1024;

function log(msg: string): void {
  process.stdout.write(`  ${msg}\n`);
}

/** nbd-client over TCP with the client's certificate, key and CA; waits for the device's size. */
async function attachTls(dev: string, name: string, clientDir: string): Promise<void> {
  const files = ['-certfile', path.join(clientDir, 'client-cert.pem'), '-keyfile', path.join(clientDir, 'client-key.pem'), '-cacertfile', path.join(clientDir, 'ca-cert.pem')];
  run('nbd-client', ['127.0.0.1', PORT, dev, '-N', name, '-b', '4096', ...files]);
  await waitFor(`${dev} to connect over TLS`, () => nbdConnected(dev) && nbdSectors(dev) > 0, 60_000);
}

export async function nbdsnapTls(_ctx: unknown, dir: string): Promise<void> {
  const certs = makeTlsFixtures(path.join(dir, 'certs'));
  const daemon = new NbdsnapDaemon(path.join(dir, 'daemon'), [
    '--listen', `127.0.0.1:${PORT}`, '--tls', 'require', '--tls-cert', certs.server.cert, '--tls-key', certs.server.key,
    '--tls-ca', certs.ca, '--tls-verify-peer',
  ]);
  await daemon.start();
  const dev = freeNbd();
  const mnt = freshDir(path.join(dir, 'mnt'));
  try {
    const originFile = zeroFile(path.join(dir, 'tls-origin.img'), 32 * MiB);
    daemon.cli('origin', 'add', 'tlso', originFile);
    const plain = run('nbd-client', ['127.0.0.1', PORT, freeNbd([dev]), '-N', 'tlso', '-b', '4096'], { allowFail: true, timeoutMs: 60_000 });
    if (plain.code === 0) throw new Error('a plaintext nbd-client attached to a --tls require daemon');
    await attachTls(dev, 'tlso', certs.clientDir);
    const pattern = path.join(dir, 'pattern.bin');
    fs.writeFileSync(pattern, randomBytes(4 * MiB));
    run('dd', [`if=${pattern}`, `of=${dev}`, 'bs=1M', 'seek=1', 'oflag=direct', 'conv=fsync', 'status=none']);
    const back = path.join(dir, 'back.bin');
    run('dd', [`if=${dev}`, `of=${back}`, 'bs=1M', 'skip=1', 'count=4', 'iflag=direct', 'status=none']);
    if (sha256Of(back) !== sha256Of(pattern)) throw new Error('data read back through /dev/nbdX over TLS differs');
    if (!readAt(originFile, MiB, 4 * MiB).equals(fs.readFileSync(pattern))) throw new Error('the origin file does not hold the data written over TLS');
    run('mkfs.ext4', ['-q', '-F', dev]);
    run('mount', [dev, mnt]);
    fs.writeFileSync(path.join(mnt, 'file'), Buffer.alloc(MiB, 'over tls\n'));
    run('umount', [mnt]);
    run('e2fsck', ['-fn', dev]);
    await nbdDetach(dev);
    const daemonLog = fs.readFileSync(daemon.log, 'utf8');
    if (!/"peer":"CN=client\.nbdsnap\.test","msg":"TLS established"/.test(daemonLog)) {
      throw new Error(`no "TLS established" with the client certificate in the daemon log: ${daemon.logTail(5)}`);
    }
    if (!/plaintext client refused: TLS is required/.test(daemonLog)) throw new Error('the refusal of the plaintext nbd-client is not in the daemon log');
    log(`nbd-client with client certificate: ${dev} over TLS, 4 MiB O_DIRECT write/read-back (in the origin file too), ext4 + e2fsck; plaintext nbd-client refused`);
  } finally {
    run('umount', [mnt], { allowFail: true });
    await nbdDetach(dev).catch(() => undefined);
    await daemon.stop();
  }
}
