// TLS with the clients users run, against real `nbdsnap serve` processes: nbdinfo and nbdcopy
// (libnbd: nbds+unix:// and nbds:// URIs, tls-certificates=DIR, tls-psk-file=FILE), qemu-img
// (tls-creds-x509 and tls-creds-psk objects). Wrong CA, wrong or unknown PSK, expired
// certificates and plaintext clients of a --tls require server are refused, and the server's log
// says why. Certificates are made in the test (test/support/tls-certs.ts).
// libnbd 1.14 does not check the server's certificate on nbds+unix:// (only on TCP), and qemu
// needs tls-hostname= on a Unix socket, so the server-certificate refusals go over TCP.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type ExecResult } from '../support/exec.ts';
import { makeImage, makeTempDir, startServe, type ServeProcess } from '../support/serve-process.ts';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-certs.ts';

const SIZE = 32 * 1024 * 1024;
const MiB = 1024 * 1024;
/** System tools first (nbdsh-style Python is not needed here, but keep the Debian binaries first). */
const env = { ...process.env, PATH: `/usr/bin:/usr/sbin:${process.env.PATH}`, LIBNBD_DEBUG: '0' };
const tool = (cmd: string, args: string[]): Promise<ExecResult> => run(cmd, args, { env });

interface TlsServer {
  srv: ServeProcess;
  port: number;
  /** nbds+unix:// URI with `query` appended. */
  unix(query: string, user?: string): string;
  /** nbds:// URI over TCP with `query`. */
  tcp(query: string): string;
}

let dir: string;
let certs: TlsFixtures;
const servers: ServeProcess[] = [];

async function serveTls(name: string, tlsArgs: string[]): Promise<TlsServer> {
  const image = makeImage(dir, SIZE, `${name}.img`);
  const srv = await startServe({ image, socket: path.join(dir, `${name}.sock`), name: 'disk', extra: ['--listen', '127.0.0.1:0', ...tlsArgs] });
  servers.push(srv);
  const port = Number((await srv.waitForStderr(/"port":(\d+)/))[1]);
  return {
    srv, port,
    unix: (query, user) => `nbds+unix://${user ? `${user}@` : ''}/disk?socket=${srv.socket}&${query}`,
    tcp: (query) => `nbds://127.0.0.1:${port}/disk?${query}`,
  };
}

const x509 = (): string[] => ['--tls-cert', certs.server.cert, '--tls-key', certs.server.key];
const certsIn = (clientDir: string): string => `tls-certificates=${clientDir}`;

async function refused(cmd: string, args: string[]): Promise<ExecResult> {
  const r = await tool(cmd, args);
  expect(r.code, `${cmd} should have failed:\n${r.stdout}${r.stderr}`).not.toBe(0);
  return r;
}

/** qemu-img args for an nbd export behind a tls-creds object (`target`: as convert's output). */
function qemuArgs(creds: string, server: string, target = false): string[] {
  return ['--object', `${creds},id=tls0,endpoint=client`, target ? '--target-image-opts' : '--image-opts', `driver=nbd,${server},export=disk,tls-creds=tls0`];
}

let req: TlsServer;
let verify: TlsServer;
let psk: TlsServer;
let on: TlsServer;

beforeAll(async () => {
  dir = makeTempDir();
  certs = makeTlsFixtures(path.join(dir, 'certs'));
  [req, verify, psk, on] = await Promise.all([
    serveTls('require', ['--tls', 'require', ...x509()]),
    serveTls('verify', ['--tls', 'require', ...x509(), '--tls-ca', certs.ca, '--tls-verify-peer']),
    serveTls('psk', ['--tls', 'require', '--tls-psk', certs.psk.server]),
    serveTls('on', ['--tls', 'on', ...x509()]),
  ]);
});
afterAll(async () => {
  const exits = await Promise.all(servers.map((s) => s.stop()));
  expect(exits.map((e) => e.code)).toEqual(servers.map(() => 0));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('X.509 with real clients', () => {
  it('nbdinfo over nbds+unix:// and nbds:// reports TLS and the export', async () => {
    for (const uri of [req.unix(certsIn(certs.clientDir)), req.tcp(certsIn(certs.clientDir))]) {
      const r = await tool('nbdinfo', ['--json', uri]);
      expect(r.code, r.stderr).toBe(0);
      const info = JSON.parse(r.stdout);
      expect(info.TLS).toBe(true);
      expect(info.exports[0]['export-size']).toBe(SIZE);
    }
    expect(req.srv.stderr()).toMatch(/"tls":"require","credentials":"X.509","msg":"TLS required"/);
    await req.srv.waitForStderr(/"protocol":"TLSv1\.3".*"msg":"TLS established"/);
  });

  it('nbdcopy writes and reads back 8 MiB over TLS (several connections), byte for byte', async () => {
    const src = path.join(dir, 'src.bin');
    fs.writeFileSync(src, crypto.randomBytes(8 * MiB));
    const w = await tool('nbdcopy', ['--flush', src, req.unix(certsIn(certs.clientDir))]);
    expect(w.code, w.stderr).toBe(0);
    const back = path.join(dir, 'back.bin');
    const r = await tool('nbdcopy', ['-C', '4', req.tcp(certsIn(certs.clientDir)), back]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(back).subarray(0, 8 * MiB).equals(fs.readFileSync(src))).toBe(true);
  });

  it('qemu-img convert and compare over TLS, TCP and Unix socket (tls-creds-x509)', async () => {
    const src = path.join(dir, 'qsrc.bin');
    fs.writeFileSync(src, crypto.randomBytes(4 * MiB));
    fs.truncateSync(src, SIZE);
    const creds = `tls-creds-x509,dir=${certs.clientDir}`;
    const tcp = `server.type=inet,server.host=127.0.0.1,server.port=${req.port}`;
    const unix = `server.type=unix,server.path=${req.srv.socket},tls-hostname=localhost`;
    const convert = await tool('qemu-img', ['convert', '-n', '-f', 'raw', src, ...qemuArgs(creds, tcp, true)]);
    expect(convert.code, convert.stderr).toBe(0);
    const info = await tool('qemu-img', ['info', '--output=json', ...qemuArgs(creds, unix)]);
    expect(info.code, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout)['virtual-size']).toBe(SIZE);
    const back = path.join(dir, 'qback.bin');
    const out = await tool('qemu-img', ['convert', '-O', 'raw', ...qemuArgs(creds, unix), back]);
    expect(out.code, out.stderr).toBe(0);
    expect(fs.readFileSync(back).equals(fs.readFileSync(src))).toBe(true);
  });

  it('a client that trusts another CA refuses the server, and the server says the client hung up', async () => {
    const before = req.srv.stderr().length;
    const r = await refused('nbdinfo', ['--size', req.tcp(certsIn(certs.wrongCaDir))]);
    expect(r.stderr).toMatch(/certificate verification/i);
    const q = await refused('qemu-img', ['info', ...qemuArgs(`tls-creds-x509,dir=${certs.wrongCaDir}`, `server.type=inet,server.host=127.0.0.1,server.port=${req.port}`)]);
    expect(q.stderr).toMatch(/known issuer|not trusted/i);
    await req.srv.waitForStderr(/TLS handshake failed: the client hung up/);
    expect(req.srv.stderr().slice(before)).toMatch(/"level":40.*TLS handshake failed: the client hung up.*do not trust the server's certificate/);
  });

  it('an expired server certificate: a warning at startup, refused by the clients', async () => {
    const expired = await serveTls('expired', ['--tls', 'require', '--tls-cert', certs.expiredServer.cert, '--tls-key', certs.expiredServer.key]);
    expect(expired.srv.stderr()).toMatch(/"level":40.*expired on Feb {1,2}1 00:00:00 2020 GMT: clients will refuse it/);
    await refused('nbdinfo', ['--size', expired.tcp(certsIn(certs.clientDir))]);
    const q = await refused('qemu-img', ['info', ...qemuArgs(`tls-creds-x509,dir=${certs.clientDir}`, `server.type=inet,server.host=127.0.0.1,server.port=${expired.port}`)]);
    expect(q.stderr).toMatch(/not trusted|expired/i);
    await expired.srv.waitForStderr(/TLS handshake failed/);
  });

  it('a plaintext client of a --tls require server is refused, and the log says so', async () => {
    const r = await refused('nbdinfo', ['--size', `nbd+unix:///disk?socket=${req.srv.socket}`]);
    expect(r.stderr).not.toMatch(/disk/i);
    const q = await refused('qemu-img', ['info', `nbd+unix:///disk?socket=${req.srv.socket}`]);
    expect(q.stderr).toMatch(/TLS/);
    await req.srv.waitForStderr(/"level":40.*plaintext client refused: TLS is required/);
  });
});

describe('client certificates (--tls-verify-peer)', () => {
  it('a client certificate of the CA is accepted, and the log names it', async () => {
    const r = await tool('nbdinfo', ['--size', verify.unix(certsIn(certs.clientDir))]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(String(SIZE));
    await verify.srv.waitForStderr(/"peer":"CN=client\.nbdsnap\.test","msg":"TLS established"/);
  });

  it('no certificate, an expired one, or one of another CA: refused with the reason in the log', async () => {
    await refused('nbdinfo', ['--size', verify.unix(certsIn(certs.noClientCertDir))]);
    await verify.srv.waitForStderr(/TLS handshake failed: peer did not return a certificate/);
    await refused('nbdinfo', ['--size', verify.unix(certsIn(certs.expiredClientDir))]);
    await verify.srv.waitForStderr(/TLS handshake failed: client certificate refused: CERT_HAS_EXPIRED/);
    await refused('nbdinfo', ['--size', verify.tcp(certsIn(certs.strangerDir))]);
    // The client may exit before the server has logged its side: wait for the third line.
    await verify.srv.waitForStderr(/TLS handshake failed[\s\S]*?TLS handshake failed[\s\S]*?TLS handshake failed/);
    const lines = verify.srv.stderr().split('\n').filter((l) => l.includes('TLS handshake failed'));
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/peer did not return a certificate|client certificate refused/);
  });
});

describe('PSK (--tls-psk, nbdkit format)', () => {
  it('nbdinfo and nbdcopy with the right key; qemu-img with tls-creds-psk', async () => {
    const uri = psk.unix(`tls-psk-file=${certs.psk.alice}`, 'alice');
    const r = await tool('nbdinfo', ['--size', uri]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(String(SIZE));
    const src = path.join(dir, 'psrc.bin');
    fs.writeFileSync(src, crypto.randomBytes(2 * MiB));
    expect((await tool('nbdcopy', ['--flush', src, psk.tcp(`tls-psk-file=${certs.psk.alice}`).replace('nbds://', 'nbds://alice@')])).code).toBe(0);
    const qdir = path.join(dir, 'qemu-psk');
    fs.mkdirSync(qdir, { recursive: true });
    fs.copyFileSync(certs.psk.alice, path.join(qdir, 'keys.psk'));
    const back = path.join(dir, 'pback.bin');
    const q = await tool('qemu-img', ['convert', '-O', 'raw', ...qemuArgs(`tls-creds-psk,dir=${qdir},username=alice`, `server.type=unix,server.path=${psk.srv.socket}`), back]);
    expect(q.code, q.stderr).toBe(0);
    expect(fs.readFileSync(back).subarray(0, 2 * MiB).equals(fs.readFileSync(src))).toBe(true);
    await psk.srv.waitForStderr(/"peer":"psk:alice","msg":"TLS established"/);
  });

  it('a wrong key or an unknown username is refused, and the log says which', async () => {
    await refused('nbdinfo', ['--size', psk.unix(`tls-psk-file=${certs.psk.wrong}`, 'alice')]);
    await psk.srv.waitForStderr(/TLS handshake failed: wrong key for PSK identity \\"alice\\"/);
    const carol = path.join(dir, 'carol.psk');
    fs.writeFileSync(carol, `carol:${'c4'.repeat(32)}\n`);
    await refused('nbdinfo', ['--size', psk.unix(`tls-psk-file=${carol}`, 'carol')]);
    await psk.srv.waitForStderr(/TLS handshake failed: unknown PSK identity \\"carol\\"/);
    await refused('nbdinfo', ['--size', `nbd+unix:///disk?socket=${psk.srv.socket}`]);
  });
});

describe('--tls on', () => {
  it('serves plaintext and TLS clients side by side', async () => {
    const plain = await tool('nbdinfo', ['--json', `nbd+unix:///disk?socket=${on.srv.socket}`]);
    const secure = await tool('nbdinfo', ['--json', on.unix(certsIn(certs.clientDir))]);
    expect([plain.code, secure.code]).toEqual([0, 0]);
    expect([JSON.parse(plain.stdout).TLS, JSON.parse(secure.stdout).TLS]).toEqual([false, true]);
    expect(on.srv.stderr()).toMatch(/"tls":"on","credentials":"X.509","msg":"TLS offered \(plaintext clients allowed\)"/);
  });
});
