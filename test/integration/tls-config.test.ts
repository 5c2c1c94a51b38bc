// Loading TLS credentials (real files made by openssl) and the daemon's TLS settings from its three
// sources. Every file problem is a TlsSetupError naming the flag and the file, never a key.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, resolveConfig } from '../../src/daemon/config.ts';
import { loadTls, loadTlsSettings } from '../../src/nbd/tls-credentials.ts';
import { TlsSetupError, parseTlsSettings, type RawTlsSettings } from '../../src/nbd/tls-settings.ts';
import { makeTempDir } from '../support/serve-process.ts';
import { makeTlsFixtures, type TlsFixtures } from '../support/tls-certs.ts';

let dir: string;
let certs: TlsFixtures;

beforeAll(() => {
  dir = makeTempDir();
  certs = makeTlsFixtures(path.join(dir, 'certs'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const load = (raw: RawTlsSettings) => loadTlsSettings(raw, (message, cause) => new Error(message, { cause }));

describe('loadTls', () => {
  it('X.509: certificate and key (and the CA with --tls-verify-peer) become tls.Server options', () => {
    const tls = load({ tls: 'require', tlsCert: certs.server.cert, tlsKey: certs.server.key, tlsCa: certs.ca, tlsVerifyPeer: true })!;
    expect(tls).toMatchObject({ mode: 'require', credentials: 'X.509, client certificates verified', warnings: [] });
    expect(tls.serverOptions).toMatchObject({ requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' });
    expect(tls.pskKeys).toBeUndefined();
  });

  it('PSK: the keys by identity, and cipher suites that allow TLS 1.2 PSK', () => {
    const tls = load({ tls: 'on', tlsPsk: certs.psk.server })!;
    expect([...tls.pskKeys!.keys()]).toEqual(['alice', 'bob']);
    expect(tls.credentials).toBe('PSK (2 identities)');
    expect(String(tls.serverOptions.ciphers)).toMatch(/^ECDHE-PSK-/);
    expect(String(tls.serverOptions.ciphers)).not.toMatch(/!PSK/);
  });

  it('off loads nothing, even with credentials named', () => {
    expect(load({ tls: 'off', tlsCert: '/nonexistent' })).toBeUndefined();
  });

  it('an expired server certificate loads, with a warning', () => {
    const tls = loadTls(parseTlsSettings({ tls: 'on', tlsCert: certs.expiredServer.cert, tlsKey: certs.expiredServer.key }))!;
    expect(tls.warnings).toEqual([expect.stringMatching(/expired-server-cert\.pem expired on Feb {1,2}1 00:00:00 2020 GMT: clients will refuse it/)]);
  });

  it.each([
    ['a missing certificate', () => ({ tlsCert: path.join(dir, 'nope.pem'), tlsKey: certs.server.key }), /cannot read --tls-cert .*nope\.pem: ENOENT/],
    ['a missing key', () => ({ tlsCert: certs.server.cert, tlsKey: path.join(dir, 'nope.key') }), /cannot read --tls-key .*nope\.key: ENOENT/],
    ['an unreadable certificate (a directory)', () => ({ tlsCert: dir, tlsKey: certs.server.key }), /cannot read --tls-cert .*: EISDIR/],
    ['a key of another certificate', () => ({ tlsCert: certs.server.cert, tlsKey: certs.expiredServer.key }), /--tls-key .*expired-server-key\.pem does not match the certificate in --tls-cert .*server-cert\.pem/],
    ['a key that is no key', () => ({ tlsCert: certs.server.cert, tlsKey: certs.server.cert }), /--tls-key .* does not hold an unencrypted PEM private key/],
    ['a certificate that is no certificate', () => ({ tlsCert: certs.psk.server, tlsKey: certs.server.key }), /--tls-cert .*server\.psk does not hold a PEM certificate/],
    ['a CA that is no certificate', () => ({ tlsCert: certs.server.cert, tlsKey: certs.server.key, tlsCa: certs.server.key, tlsVerifyPeer: true }), /--tls-ca .* does not hold a PEM certificate/],
    ['a missing PSK file', () => ({ tlsPsk: path.join(dir, 'none.psk') }), /cannot read --tls-psk .*none\.psk: ENOENT/],
    ['a PSK file that is no PSK file', () => ({ tlsPsk: certs.server.cert }), /--tls-psk .*: line 1: expected username:hexkey/],
  ])('%s', (_what, raw, message) => {
    expect(() => loadTls(parseTlsSettings({ tls: 'on', ...raw() }))).toThrow(TlsSetupError);
    expect(() => load({ tls: 'on', ...raw() })).toThrow(message);
  });
});

describe('the daemon settings', () => {
  it('come from the config file (paths relative to it, tlsVerifyPeer a JSON boolean)', () => {
    const conf = path.join(certs.ca, '..', '..', 'daemon.json');
    const rel = (file: string) => path.relative(path.dirname(conf), file);
    fs.writeFileSync(conf, JSON.stringify({ tls: 'require', tlsCert: rel(certs.server.cert), tlsKey: rel(certs.server.key), tlsCa: rel(certs.ca), tlsVerifyPeer: true }));
    const config = resolveConfig({ config: conf }, {}, 1000);
    expect(config.tls).toMatchObject({ mode: 'require', credentials: 'X.509, client certificates verified' });
  });

  it('come from NBDSNAP_TLS* variables, and flags win', () => {
    const env = { NBDSNAP_TLS: 'on', NBDSNAP_TLS_PSK: certs.psk.server, HOME: '/home/u' };
    expect(resolveConfig({}, env, 1000).tls).toMatchObject({ mode: 'on', credentials: 'PSK (2 identities)' });
    expect(resolveConfig({ tls: 'off' }, env, 1000).tls).toBeUndefined();
    const x509Env = { NBDSNAP_TLS: 'require', NBDSNAP_TLS_CERT: certs.server.cert, NBDSNAP_TLS_KEY: certs.server.key, NBDSNAP_TLS_CA: certs.ca, NBDSNAP_TLS_VERIFY_PEER: 'true' };
    expect(resolveConfig({}, x509Env, 1000).tls?.serverOptions.requestCert).toBe(true);
    expect(resolveConfig({}, { HOME: '/home/u' }, 1000).tls).toBeUndefined();
  });

  it('that cannot work are a ConfigError prefixed "tls:"', () => {
    expect(() => resolveConfig({ tls: 'require' }, {}, 1000)).toThrow(ConfigError);
    expect(() => resolveConfig({ tls: 'require' }, {}, 1000)).toThrow(/^tls: --tls require needs credentials/);
    const conf = path.join(dir, 'number.json');
    fs.writeFileSync(conf, JSON.stringify({ tls: 'on', tlsVerifyPeer: 1 }));
    expect(() => resolveConfig({ config: conf }, {}, 1000)).toThrow(/tlsVerifyPeer must be a string/);
  });
});
