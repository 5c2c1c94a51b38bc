// TLS on the daemon: set from a config file (paths relative to it) and from NBDSNAP_TLS*
// variables, serving an origin and its snapshot to libnbd clients over TLS; and the startup
// errors of `nbdsnap daemon` and `nbdsnap serve` for settings that cannot work: one line, the
// right exit status, no stack trace, nothing started.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startDaemon, tempDir, type DaemonHandle } from '../support/daemon-harness.ts';
import { run } from '../support/exec.ts';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-certs.ts';
import { waitFor } from '../support/wait-for.ts';

const MiB = 1024 * 1024;
const env = { ...process.env, PATH: `/usr/bin:${process.env.PATH}`, LIBNBD_DEBUG: '0' };
let dir: string;
let certs: TlsFixtures;
const daemons: DaemonHandle[] = [];

beforeAll(() => {
  dir = tempDir('tls-daemon-');
  certs = makeTlsFixtures(path.join(dir, 'certs'));
});
afterAll(async () => {
  for (const d of daemons) expect((await d.stop()).code).toBe(0);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function daemon(name: string, opts: { env?: Record<string, string>; args?: string[] }): Promise<DaemonHandle> {
  const d = await startDaemon(path.join(dir, name), opts);
  daemons.push(d);
  return d;
}

function uri(d: DaemonHandle, exportName: string, query: string, user = ''): string {
  return `nbds+unix://${user}/${exportName}?socket=${d.nbdSocket}&${query}`;
}

describe('the daemon over TLS', () => {
  it('takes its X.509 settings from a config file and serves an origin and a snapshot over TLS only', async () => {
    const base = path.join(dir, 'conf');
    fs.mkdirSync(base, { recursive: true });
    fs.cpSync(path.dirname(certs.server.cert), path.join(base, 'pki'), { recursive: true });
    const conf = path.join(base, 'nbdsnap.json');
    fs.writeFileSync(conf, JSON.stringify({ tls: 'require', tlsCert: 'pki/server-cert.pem', tlsKey: 'pki/server-key.pem', tlsVerifyPeer: false }));
    const d = await daemon('x509', { args: ['--config', conf] });
    const image = path.join(dir, 'origin.img');
    const original = crypto.randomBytes(4 * MiB);
    fs.writeFileSync(image, original);
    await d.ok('origin', 'add', 'base', image);
    await d.ok('snapshot', 'create', 'before', '--origin', 'base', '--size', '8M');
    const creds = `tls-certificates=${certs.clientDir}`;
    const update = path.join(dir, 'update.bin');
    fs.writeFileSync(update, crypto.randomBytes(MiB));
    const w = await run('nbdcopy', [update, uri(d, 'base', creds)], { env });
    expect(w.code, w.stderr).toBe(0);
    const snap = path.join(dir, 'snap.bin');
    const r = await run('nbdcopy', [uri(d, 'before', creds), snap], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(snap).equals(original)).toBe(true);
    expect(fs.readFileSync(image).subarray(0, MiB).equals(fs.readFileSync(update))).toBe(true);
    const plain = await run('nbdinfo', ['--size', `nbd+unix:///base?socket=${d.nbdSocket}`], { env });
    expect(plain.code).not.toBe(0);
    await waitFor(() => /plaintext client refused: TLS is required/.test(d.log()), 'the refusal in the log');
    expect(d.log()).toMatch(/"tls":"require","credentials":"X.509","msg":"TLS required"/);
    expect(d.log()).toMatch(/"msg":"TLS established"/);
  });

  it('takes PSK settings from NBDSNAP_TLS and NBDSNAP_TLS_PSK', async () => {
    const d = await daemon('psk', { env: { NBDSNAP_TLS: 'on', NBDSNAP_TLS_PSK: certs.psk.server } });
    const image = path.join(dir, 'psk-origin.img');
    fs.writeFileSync(image, Buffer.alloc(MiB, 7));
    await d.ok('origin', 'add', 'p', image);
    const r = await run('nbdinfo', ['--size', uri(d, 'p', `tls-psk-file=${certs.psk.alice}`, 'alice@')], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(String(MiB));
    const plain = await run('nbdinfo', ['--size', `nbd+unix:///p?socket=${d.nbdSocket}`], { env });
    expect(plain.code, plain.stderr).toBe(0); // --tls on
    await waitFor(() => /"peer":"psk:alice","msg":"TLS established"/.test(d.log()), 'the PSK identity in the log');
    expect(d.log()).toMatch(/"tls":"on","credentials":"PSK \(2 identities\)"/);
  });
});

describe('TLS settings that cannot work stop the start with one line (every message: tls-config.test.ts)', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['no credentials', () => ['--tls', 'require'], /--tls require needs credentials: --tls-cert and --tls-key \(X\.509\), or --tls-psk FILE/],
    ['a key of another certificate', () => ['--tls', 'on', '--tls-cert', certs.server.cert, '--tls-key', certs.expiredServer.key], /--tls-key .* does not match the certificate in --tls-cert/],
  ];

  it.each(cases)('daemon: %s (exit 7, nothing created)', async (_what, args, message) => {
    const data = path.join(dir, 'never');
    const r = await runCli(['daemon', '--data-dir', data, ...args()]);
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/^nbdsnap: tls: /);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(data)).toBe(false);
  });

  it.each(cases)('serve: %s (exit 2)', async (_what, args, message) => {
    const image = path.join(dir, 'serve.img');
    fs.writeFileSync(image, Buffer.alloc(MiB));
    const r = await runCli(['serve', image, '--socket', path.join(dir, 'never.sock'), ...args()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
