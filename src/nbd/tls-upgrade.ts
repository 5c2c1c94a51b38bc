// NBD_OPT_STARTTLS, the socket side: turns a connection's plaintext socket into a TLS socket.
// The order is the point (the spec's STARTTLS caveats, CVE-2021-3716):
//   1. the plaintext socket is paused: bytes arriving from now on stay in it and are fed to the
//      TLS engine, never to the NBD parser;
//   2. whatever the handshake had queued past the STARTTLS option is discarded: a man in the
//      middle could otherwise inject options that would count as sent over TLS;
//   3. the ACK goes out in plaintext and is handed to the kernel;
//   4. the TLS handshake runs in a one-shot tls.Server, so Node itself enforces the client
//      certificate policy (a bare TLSSocket would not) and reports why a handshake failed.
// The caller removes its own 'data'/'end'/'drain' listeners from the plaintext socket first.
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { ConnectionClosedError, type ByteQueue } from './byte-queue.ts';
import type { NbdTls } from './tls-credentials.ts';
import { errorText } from '../common/error-text.ts';
import type { Logger } from '../log.ts';

/** The TLS handshake failed (bad certificate, wrong PSK, no shared cipher, client gone...). */
export class TlsHandshakeError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TlsHandshakeError';
  }
}

/** Write and wait until the kernel has the bytes; a client gone already is ConnectionClosedError. */
function sendPlain(socket: Socket, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.write(bytes, (err) => {
    if (err) reject(new ConnectionClosedError(`client left before STARTTLS was acknowledged: ${err.message}`));
    else resolve();
  }));
}

/** The identity a PSK client offered, and whether the key file knows it. */
interface PskOffer {
  identity: string;
  known: boolean;
}

function subjectOf(socket: tls.TLSSocket): string | undefined {
  return socket.getPeerX509Certificate()?.subject.replace(/\n/g, ', ');
}

/** Why a handshake failed, in one line: Node's verification code, then the PSK, then OpenSSL's reason. */
function failure(err: Error & { reason?: string }, socket: tls.TLSSocket, psk: PskOffer | undefined): string {
  const code = socket.authorizationError as unknown as string | null;
  if (code) return `client certificate refused: ${code}`;
  const reason = err.reason ?? errorText(err);
  if (psk && !psk.known) return `unknown PSK identity ${JSON.stringify(psk.identity)}`;
  if (psk && /binder|decrypt|bad record mac/i.test(reason)) return `wrong key for PSK identity ${JSON.stringify(psk.identity)} (${reason})`;
  if (/ECONNRESET|EPIPE|socket hang up/.test(reason)) {
    return `the client hung up (${reason}); clients do that when they do not trust the server's certificate (wrong CA, expired, other name)`;
  }
  return reason;
}

function handshake(raw: Socket, config: NbdTls, logger: Logger): Promise<tls.TLSSocket> {
  let psk: PskOffer | undefined;
  const options: tls.TlsOptions = { ...config.serverOptions };
  const { pskKeys } = config;
  if (pskKeys) {
    options.pskCallback = (_socket, identity) => {
      const key = pskKeys.get(identity);
      psk = { identity, known: key !== undefined };
      return key ?? null;
    };
  }
  const server = tls.createServer(options);
  return new Promise((resolve, reject) => {
    server.once('secureConnection', (socket: tls.TLSSocket) => {
      server.removeAllListeners();
      socket.allowHalfOpen = true; // NBD's: a client may half-close and still read its replies
      const peer = psk ? `psk:${psk.identity}` : subjectOf(socket);
      logger.info({ protocol: socket.getProtocol(), cipher: socket.getCipher().name, ...(peer ? { peer } : {}) }, 'TLS established');
      resolve(socket);
    });
    server.once('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      server.removeAllListeners();
      const why = failure(err, socket, psk);
      socket.destroy();
      reject(new TlsHandshakeError(`TLS handshake failed: ${why}`, { cause: err }));
    });
    server.emit('connection', raw);
  });
}

/**
 * Upgrade `raw` after STARTTLS: pause it, discard what `queue` holds, send `ack` in plaintext,
 * then run the TLS handshake. Resolves with the TLS socket (from then on the only one to read,
 * write or destroy); rejects with TlsHandshakeError, or ConnectionClosedError if the client left.
 */
export async function upgradeToTls(raw: Socket, ack: Buffer, queue: ByteQueue, config: NbdTls, logger: Logger): Promise<tls.TLSSocket> {
  raw.pause();
  const dropped = queue.skip(queue.length);
  if (dropped > 0) logger.warn({ bytes: dropped }, 'discarded plaintext the client sent after STARTTLS');
  await sendPlain(raw, ack);
  // The TLS socket inherits this: a client that half-closes mid-handshake ends it (and so fails
  // it) instead of leaving it waiting, idle and without an active handle, until the timeout.
  raw.allowHalfOpen = false;
  if (raw.destroyed) throw new ConnectionClosedError('client left before the TLS handshake');
  return handshake(raw, config, logger);
}
