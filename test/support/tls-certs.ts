// Certificates and PSK files for the TLS tests, made with the openssl command (EC P-256, fast):
// a CA, a server certificate for localhost and 127.0.0.1, a client certificate, the same from a
// second ("wrong") CA, and expired server and client certificates (`openssl ca -startdate
// -enddate`, so no clock tricks). Client directories use the file names libnbd
// (tls-certificates=DIR) and qemu (tls-creds-x509 dir=DIR) look for: ca-cert.pem,
// client-cert.pem, client-key.pem.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const CA_CONFIG = `[ca]
default_ca = testca
[testca]
database = DB/index.txt
new_certs_dir = DB
serial = DB/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[server]
subjectAltName = DNS:localhost,IP:127.0.0.1
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
[client]
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
`;

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function newKeyAndRequest(keyFile: string, csrFile: string, cn: string): void {
  openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyFile, '-out', csrFile, '-subj', `/CN=${cn}`]);
}

class TestCa {
  readonly dir: string;
  readonly cert: string;
  private readonly key: string;
  private readonly config: string;

  constructor(dir: string, cn: string) {
    this.dir = dir;
    const db = path.join(dir, 'db');
    fs.mkdirSync(db, { recursive: true });
    fs.writeFileSync(path.join(db, 'index.txt'), '');
    fs.writeFileSync(path.join(db, 'serial'), '1000\n');
    this.config = path.join(dir, 'ca.cnf');
    fs.writeFileSync(this.config, CA_CONFIG.replaceAll('DB', db));
    this.cert = path.join(dir, 'ca-cert.pem');
    this.key = path.join(dir, 'ca-key.pem');
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', this.key, '-out', this.cert,
      '-days', '30', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  }

  /** Key and certificate `<name>-key.pem`/`<name>-cert.pem` in `dir`; `expired`: valid only in January 2020. */
  issue(name: string, kind: 'server' | 'client', dir: string, opts: { expired?: boolean } = {}): { cert: string; key: string } {
    const key = path.join(dir, `${name}-key.pem`);
    const cert = path.join(dir, `${name}-cert.pem`);
    const csr = path.join(this.dir, `${name}.csr`);
    newKeyAndRequest(key, csr, kind === 'server' ? 'localhost' : `${name}.nbdsnap.test`);
    const dates = opts.expired ? ['-startdate', '20200101000000Z', '-enddate', '20200201000000Z'] : ['-days', '30'];
    openssl(['ca', '-batch', '-notext', '-config', this.config, '-cert', this.cert, '-keyfile', this.key, '-in', csr, '-out', cert, '-extensions', kind, ...dates]);
    return { cert, key };
  }
}

export interface TlsFixtures {
  /** The server's CA (client certificates are checked against it too). */
  ca: string;
  server: { cert: string; key: string };
  expiredServer: { cert: string; key: string };
  /** Directories for libnbd tls-certificates= and qemu tls-creds-x509 dir=. */
  clientDir: string;
  /** Trusts another CA, and holds a client certificate of that CA. */
  wrongCaDir: string;
  /** Trusts the right CA; its client certificate comes from the other CA. */
  strangerDir: string;
  /** Trusts the right CA; its client certificate expired in 2020. */
  expiredClientDir: string;
  /** CA only, no client certificate. */
  noClientCertDir: string;
  /** PSK files: `alice` and `bob`; `wrong` holds alice with another key. */
  psk: { server: string; alice: string; wrong: string };
}

function clientDir(dir: string, ca: string, issued?: { cert: string; key: string }): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(ca, path.join(dir, 'ca-cert.pem'));
  if (issued) {
    fs.renameSync(issued.cert, path.join(dir, 'client-cert.pem'));
    fs.renameSync(issued.key, path.join(dir, 'client-key.pem'));
  }
  return dir;
}

/** Make everything under `root` (a fresh temp dir). Takes well under a second. */
export function makeTlsFixtures(root: string): TlsFixtures {
  const ca = new TestCa(path.join(root, 'ca'), 'nbdsnap test CA');
  const other = new TestCa(path.join(root, 'other-ca'), 'some other CA');
  const serverDir = path.join(root, 'server');
  fs.mkdirSync(serverDir, { recursive: true });
  const tmp = path.join(root, 'issued');
  fs.mkdirSync(tmp, { recursive: true });
  const alice = 'alice:' + 'a1'.repeat(32) + '\n';
  const psk = { server: path.join(root, 'server.psk'), alice: path.join(root, 'alice.psk'), wrong: path.join(root, 'wrong.psk') };
  fs.writeFileSync(psk.server, alice + 'bob:' + 'b0'.repeat(16) + '\n', { mode: 0o600 });
  fs.writeFileSync(psk.alice, alice, { mode: 0o600 });
  fs.writeFileSync(psk.wrong, 'alice:' + 'ee'.repeat(32) + '\n', { mode: 0o600 });
  return {
    ca: ca.cert,
    server: ca.issue('server', 'server', serverDir),
    expiredServer: ca.issue('expired-server', 'server', serverDir, { expired: true }),
    clientDir: clientDir(path.join(root, 'client'), ca.cert, ca.issue('client', 'client', tmp)),
    wrongCaDir: clientDir(path.join(root, 'client-wrong-ca'), other.cert, other.issue('stranger', 'client', tmp)),
    strangerDir: clientDir(path.join(root, 'client-stranger'), ca.cert, other.issue('intruder', 'client', tmp)),
    expiredClientDir: clientDir(path.join(root, 'client-expired'), ca.cert, ca.issue('old', 'client', tmp, { expired: true })),
    noClientCertDir: clientDir(path.join(root, 'client-no-cert'), ca.cert),
    psk,
  };
}
