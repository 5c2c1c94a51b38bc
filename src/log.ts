// One place that builds loggers: JSON lines by default, human-readable on a TTY.
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** Force pretty (true) or JSON (false); default: pretty when stderr is a TTY. */
  pretty?: boolean;
  /** Where to write (tests inject an in-memory stream). Default: stderr. */
  destination?: DestinationStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.NBDSNAP_LOG_LEVEL ?? 'info';
  if (opts.destination) return pino({ level }, opts.destination);
  const pretty = opts.pretty ?? process.stderr.isTTY;
  if (pretty) {
    return pino({ level, transport: { target: 'pino-pretty', options: { destination: 2, colorize: true } } });
  }
  return pino({ level }, pino.destination({ dest: 2, sync: false }));
}

/** A logger that drops everything (library default when none is injected). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
