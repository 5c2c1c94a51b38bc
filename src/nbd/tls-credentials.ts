// Loads what TlsSettings name into what the server needs at STARTTLS: tls.createServer options
// (certificate, key, client-CA policy, ciphers) and the PSK table. Everything is read and checked
// here, once, at startup, so a missing, unreadable or mismatched file is a one-line startup error
// (TlsSetupError) and never a failed handshake later.
import crypto, { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import { errorText } from '../common/error-text.ts';
import { parsePskFile } from './tls-psk-file.ts';
import { TlsSetupError, parseTlsSettings, type RawTlsSettings, type TlsSettings } from './tls-settings.ts';
import type { Logger } from '../log.ts';

/** TLS 1.2 PSK suites (libnbd/GnuTLS offer ECDHE-PSK, DHE-PSK and PSK), forward-secret first. */
const PSK_CIPHERS = [
  'ECDHE-PSK-CHACHA20-POLY1305', 'ECDHE-PSK-AES256-CBC-SHA384', 'ECDHE-PSK-AES128-CBC-SHA256',
  'DHE-PSK-AES256-GCM-SHA384', 'DHE-PSK-AES128-GCM-SHA256', 'DHE-PSK-CHACHA20-POLY1305',
  'PSK-AES256-GCM-SHA384', 'PSK-AES128-GCM-SHA256', 'PSK-CHACHA20-POLY1305',
].join(':');

export interface NbdTls {
  mode: 'on' | 'require';
  /** Options for the tls.Server that runs each STARTTLS handshake (the PSK callback is added per connection). */
  serverOptions: tls.TlsOptions;
  /** Pre-shared keys by identity; undefined without --tls-psk. */
  pskKeys?: ReadonlyMap<string, Buffer>;
  /** For the startup log, e.g. "X.509, client certificates verified" or "PSK (2 identities)". */
  credentials: string;
  /** Worth a warning at startup (an expired server certificate...), not fatal. */
  warnings: string[];
}

function readCredential(flag: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new TlsSetupError(`cannot read ${flag} ${file}: ${errorText(err)}`, { cause: err });
  }
}

function parseCertificate(flag: string, file: string, pem: Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new TlsSetupError(`${flag} ${file} does not hold a PEM certificate (${errorText(err)})`, { cause: err });
  }
}

function validityWarning(cert: X509Certificate, file: string, now = Date.now()): string | undefined {
  const [from, to] = [Date.parse(cert.validFrom), Date.parse(cert.validTo)];
  if (to < now) return `the certificate in --tls-cert ${file} expired on ${cert.validTo}: clients will refuse it`;
  if (from > now) return `the certificate in --tls-cert ${file} is not valid before ${cert.validFrom}: clients will refuse it`;
  return undefined;
}

/** Certificate and key, checked to belong together. */
function loadX509(certFile: string, keyFile: string): { cert: Buffer; key: Buffer; warning?: string } {
  const cert = readCredential('--tls-cert', certFile);
  const key = readCredential('--tls-key', keyFile);
  const x509 = parseCertificate('--tls-cert', certFile, cert);
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(key);
  } catch (err) {
    throw new TlsSetupError(`--tls-key ${keyFile} does not hold an unencrypted PEM private key (${errorText(err)})`, { cause: err });
  }
  if (!x509.checkPrivateKey(privateKey)) throw new TlsSetupError(`--tls-key ${keyFile} does not match the certificate in --tls-cert ${certFile}`);
  return { cert, key, warning: validityWarning(x509, certFile) };
}

function loadPsk(file: string): Map<string, Buffer> {
  const text = readCredential('--tls-psk', file).toString('utf8');
  try {
    return parsePskFile(text);
  } catch (err) {
    throw new TlsSetupError(`--tls-psk ${file}: ${errorText(err)}`, { cause: err });
  }
}

function describe(s: TlsSettings, pskKeys: Map<string, Buffer> | undefined): string {
  if (pskKeys) return `PSK (${pskKeys.size} ${pskKeys.size === 1 ? 'identity' : 'identities'})`;
  return s.verifyPeer ? 'X.509, client certificates verified' : 'X.509';
}

/** Read and check every file the settings name; undefined when TLS is off. Throws TlsSetupError. */
export function loadTls(s: TlsSettings): NbdTls | undefined {
  if (s.mode === 'off') return undefined;
  const warnings: string[] = [];
  const options: tls.TlsOptions = { minVersion: 'TLSv1.2', requestCert: s.verifyPeer, rejectUnauthorized: s.verifyPeer };
  if (s.cert !== undefined && s.key !== undefined) {
    const { cert, key, warning } = loadX509(s.cert, s.key);
    Object.assign(options, { cert, key });
    if (warning) warnings.push(warning);
  }
  if (s.ca !== undefined) {
    options.ca = readCredential('--tls-ca', s.ca);
    parseCertificate('--tls-ca', s.ca, options.ca as Buffer);
  }
  const pskKeys = s.psk === undefined ? undefined : loadPsk(s.psk);
  // Node's default list ends with !PSK, which would delete PSK suites named before it.
  if (pskKeys) options.ciphers = `${PSK_CIPHERS}:${tls.DEFAULT_CIPHERS.replace(/:!PSK\b/, '')}`;
  try {
    tls.createSecureContext(options);
  } catch (err) {
    throw new TlsSetupError(`TLS credentials rejected by OpenSSL: ${errorText(err)}`, { cause: err });
  }
  return { mode: s.mode, serverOptions: options, pskKeys, credentials: describe(s, pskKeys), warnings };
}

/** The startup lines: the mode and credentials, then each warning. */
export function logTls(config: NbdTls, logger: Logger): void {
  logger.info({ tls: config.mode, credentials: config.credentials }, config.mode === 'require' ? 'TLS required' : 'TLS offered (plaintext clients allowed)');
  for (const warning of config.warnings) logger.warn(`TLS: ${warning}`);
}

/** parseTlsSettings + loadTls, a TlsSetupError turned into the caller's own error (ConfigError, CliError). */
export function loadTlsSettings(raw: RawTlsSettings, toError: (message: string, cause: TlsSetupError) => Error): NbdTls | undefined {
  try {
    return loadTls(parseTlsSettings(raw));
  } catch (err) {
    if (err instanceof TlsSetupError) throw toError(err.message, err);
    throw err;
  }
}
