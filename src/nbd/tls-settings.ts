// What an operator asks of TLS (nbdkit's --tls, qemu-nbd's --tls-creds): the mode and the paths
// of the credentials, checked for consistency before any file is read. Parsing only: loading the
// files is tls-credentials.ts.

/** off: STARTTLS refused; on: plaintext and TLS clients; require: nothing but STARTTLS before TLS. */
export const TLS_MODES = ['off', 'on', 'require'] as const;
export type TlsMode = (typeof TLS_MODES)[number];

export interface TlsSettings {
  mode: TlsMode;
  /** X.509: the server's certificate (chain) and its private key, PEM. */
  cert?: string;
  key?: string;
  /** CA bundle that client certificates must chain to; only with verifyPeer. */
  ca?: string;
  /** Ask for a client certificate and refuse clients without a valid one. */
  verifyPeer: boolean;
  /** nbdkit's PSK file: `username:hexkey` lines. */
  psk?: string;
}

/** The settings as flags, a config file or environment variables give them (strings). */
export interface RawTlsSettings {
  tls?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsVerifyPeer?: string | boolean;
  tlsPsk?: string;
}

/** A TLS setting that cannot work; the message names the flag and is meant for the operator. */
export class TlsSetupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TlsSetupError';
  }
}

function parseMode(text: string | undefined): TlsMode {
  const mode = (text ?? 'off').trim().toLowerCase();
  if (!TLS_MODES.includes(mode as TlsMode)) throw new TlsSetupError(`--tls must be off, on or require, not ${JSON.stringify(text)}`);
  return mode as TlsMode;
}

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['', '0', 'false', 'no', 'off']);

function parseBoolean(value: string | boolean | undefined): boolean {
  if (typeof value === 'boolean' || value === undefined) return value === true;
  const text = value.trim().toLowerCase();
  if (TRUE.has(text)) return true;
  if (FALSE.has(text)) return false;
  throw new TlsSetupError(`--tls-verify-peer must be true or false, not ${JSON.stringify(value)}`);
}

/** Why these settings cannot serve TLS, or undefined. With mode off the credentials are ignored. */
function problem(s: TlsSettings): string | undefined {
  if (s.mode === 'off') return undefined;
  if (s.cert !== undefined && s.key === undefined) return '--tls-cert needs --tls-key';
  if (s.key !== undefined && s.cert === undefined) return '--tls-key needs --tls-cert';
  if (s.cert === undefined && s.psk === undefined) {
    return `--tls ${s.mode} needs credentials: --tls-cert and --tls-key (X.509), or --tls-psk FILE`;
  }
  if (s.cert !== undefined && s.psk !== undefined) return 'choose X.509 (--tls-cert/--tls-key) or PSK (--tls-psk), not both';
  if (s.verifyPeer && (s.ca === undefined || s.cert === undefined)) {
    return '--tls-verify-peer needs --tls-ca (the CA of the client certificates) and --tls-cert/--tls-key';
  }
  if (s.ca !== undefined && !s.verifyPeer) return '--tls-ca is used only to verify client certificates: add --tls-verify-peer';
  return undefined;
}

/** Parse and check the raw settings; throws TlsSetupError. */
export function parseTlsSettings(raw: RawTlsSettings): TlsSettings {
  const settings: TlsSettings = {
    mode: parseMode(raw.tls), cert: raw.tlsCert, key: raw.tlsKey, ca: raw.tlsCa,
    verifyPeer: parseBoolean(raw.tlsVerifyPeer), psk: raw.tlsPsk,
  };
  const why = problem(settings);
  if (why) throw new TlsSetupError(why);
  return settings;
}
