// The CLI side of the control API: one request per connection, one reply line back.
import net from 'node:net';
import { ControlError, ERROR_CODES, MAX_REPLY_BYTES, type Op, type Request, type ResultMap } from './api.ts';
import { readLines } from './lines.ts';

/** No daemon answers on the control socket (not running, wrong path, no permission). */
export class DaemonUnreachableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'DaemonUnreachableError';
  }
}

const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'EACCES', 'EPERM', 'ECONNRESET', 'EPIPE']);

function parseReply<K extends Op>(line: string): ResultMap[K] {
  let reply: { ok?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown } };
  try {
    reply = JSON.parse(line);
  } catch {
    throw new DaemonUnreachableError('the control socket answered with something that is not JSON');
  }
  if (reply.ok === true) return reply.result as ResultMap[K];
  const code = ERROR_CODES.includes(reply.error?.code as never) ? (reply.error!.code as (typeof ERROR_CODES)[number]) : 'INTERNAL';
  throw new ControlError(code, String(reply.error?.message ?? 'unknown error'));
}

/**
 * Send one request to the daemon at `socketPath` and return its result. Throws ControlError for a
 * refused request and DaemonUnreachableError when no daemon answers.
 */
export function callDaemon<K extends Op>(socketPath: string, request: Request<K>, opts: { connectTimeoutMs?: number } = {}): Promise<ResultMap[K]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let settled = false;
    const finish = (err: Error | undefined, result?: ResultMap[K]): void => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (err) reject(err);
      else resolve(result as ResultMap[K]);
    };
    const timer = setTimeout(
      () => finish(new DaemonUnreachableError(`no answer from the daemon at ${socketPath} (connect timed out)`)),
      opts.connectTimeoutMs ?? 5000,
    );
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.write(JSON.stringify(request) + '\n');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = UNREACHABLE_CODES.has(err.code ?? '') ? `${err.code}` : err.message;
      finish(new DaemonUnreachableError(`cannot reach the daemon at ${socketPath} (${why}); is \`nbdsnap daemon\` running?`, { cause: err }));
    });
    socket.on('close', () => finish(new DaemonUnreachableError(`the daemon at ${socketPath} closed the connection without answering`)));
    readLines(
      socket,
      MAX_REPLY_BYTES,
      (line) => {
        try {
          finish(undefined, parseReply<K>(line));
        } catch (err) {
          finish(err as Error);
        }
      },
      (err) => finish(new DaemonUnreachableError(`reply from the daemon too long: ${err.message}`)),
    );
  });
}
