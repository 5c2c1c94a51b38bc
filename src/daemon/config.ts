// The daemon's settings. Precedence, lowest first: built-in defaults, the JSON config file
// (--config FILE or $NBDSNAP_CONFIG; no file is read by default), NBDSNAP_* environment
// variables, command-line flags. Defaults need neither root nor a config file.
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_AUTOEXTEND_PERCENT, DEFAULT_AUTOEXTEND_THRESHOLD, autoextendProblem, type AutoextendSetting } from '../common/autoextend.ts';
import { CONTROL_SOCKET_NAME, NBD_SOCKET_NAME, defaultDataDir, type Env } from '../control/defaults.ts';
import { loadTlsSettings, type NbdTls } from '../nbd/tls-credentials.ts';
import type { RawTlsSettings } from '../nbd/tls-settings.ts';
import { TLS_BOOLEANS, TLS_ENV_NAMES, TLS_NOT_PATHS } from './tls-config.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface DaemonConfig {
  dataDir: string;
  /** NBD Unix socket (every export). */
  nbdSocket: string;
  controlSocket: string;
  /** Optional NBD TCP listener (off unless asked; a bare port binds 127.0.0.1). */
  listen: { host: string; port: number } | null;
  /** Optional Prometheus /metrics HTTP listener (off unless asked; a bare port binds 127.0.0.1). */
  metrics: { host: string; port: number } | null;
  logLevel: string;
  /** Defaults for snapshots created with --size that do not set their own (100: off). */
  autoextendThreshold: number;
  autoextendPercent: number;
  /** TLS credentials, loaded and checked (--tls on/require); undefined: TLS off. */
  tls?: NbdTls;
}

/** The settable keys, as flags (camelCase), config-file keys and NBDSNAP_* variables. */
export interface RawConfig extends RawTlsSettings {
  dataDir?: string;
  socket?: string;
  control?: string;
  listen?: string;
  metrics?: string;
  logLevel?: string;
  autoextendThreshold?: string;
  autoextendPercent?: string;
}

const ENV_NAMES: Record<keyof RawConfig, string> = {
  dataDir: 'NBDSNAP_DATA_DIR',
  socket: 'NBDSNAP_SOCKET',
  control: 'NBDSNAP_CONTROL',
  listen: 'NBDSNAP_LISTEN',
  metrics: 'NBDSNAP_METRICS',
  logLevel: 'NBDSNAP_LOG_LEVEL',
  autoextendThreshold: 'NBDSNAP_AUTOEXTEND_THRESHOLD',
  autoextendPercent: 'NBDSNAP_AUTOEXTEND_PERCENT',
  ...TLS_ENV_NAMES,
};

/** Keys whose value is not a path (paths in a config file are relative to the file). */
const NOT_PATHS = new Set<string>(['listen', 'metrics', 'logLevel', 'autoextendThreshold', 'autoextendPercent', ...TLS_NOT_PATHS]);
/** Keys a config file may give as JSON numbers. */
const NUMBERS = new Set<string>(['autoextendThreshold', 'autoextendPercent']);

function parseAutoextend(setting: AutoextendSetting, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = /^\s*\d+\s*$/.test(text) ? Number(text) : text;
  const problem = autoextendProblem(setting, value);
  if (problem) throw new ConfigError(`autoextend ${setting}: ${problem}`);
  return value as number;
}

export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/** "HOST:PORT", "[v6]:PORT" or "PORT" (loopback). Port 0 picks a free port. `key` names the setting in errors. */
export function parseListen(text: string, key = 'listen'): { host: string; port: number } {
  const m = /^(?:(?:\[([^\]]+)\]|([^:]+)):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${key}: expected HOST:PORT or PORT, not ${JSON.stringify(text)}`);
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

function readConfigFile(file: string): RawConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`config file ${file}: not a JSON object`);
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (!Object.hasOwn(ENV_NAMES, key)) throw new ConfigError(`config file ${file}: unknown key ${JSON.stringify(key)} (known: ${Object.keys(ENV_NAMES).join(', ')})`);
    if ((typeof value === 'number' && NUMBERS.has(key)) || (typeof value === 'boolean' && TLS_BOOLEANS.has(key))) {
      out[key] = String(value);
      continue;
    }
    if (typeof value !== 'string') throw new ConfigError(`config file ${file}: ${key} must be a string${NUMBERS.has(key) ? ' or a number' : ''}`);
    // Paths in the file are relative to the file, not to wherever the daemon was started.
    out[key] = NOT_PATHS.has(key) ? value : path.resolve(path.dirname(file), value);
  }
  return out;
}

function fromEnv(env: Env): RawConfig {
  const out: Record<string, string> = {};
  for (const [key, name] of Object.entries(ENV_NAMES)) if (env[name]) out[key] = env[name]!;
  return out;
}

function definedOnly(raw: RawConfig): RawConfig {
  return Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
}

/** Merge the sources; `configFile` comes from --config, else $NBDSNAP_CONFIG. */
export function resolveConfig(flags: RawConfig & { config?: string }, env: Env = process.env, uid?: number): DaemonConfig {
  const file = flags.config ?? env.NBDSNAP_CONFIG;
  const merged: RawConfig = { ...(file ? readConfigFile(path.resolve(file)) : {}), ...fromEnv(env), ...definedOnly(flags) };
  const dataDir = path.resolve(merged.dataDir ?? defaultDataDir({ ...env, NBDSNAP_DATA_DIR: undefined }, uid));
  const logLevel = merged.logLevel ?? 'info';
  if (!LOG_LEVELS.includes(logLevel as never)) throw new ConfigError(`log level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(logLevel)}`);
  return {
    dataDir,
    nbdSocket: path.resolve(merged.socket ?? path.join(dataDir, NBD_SOCKET_NAME)),
    controlSocket: path.resolve(merged.control ?? path.join(dataDir, CONTROL_SOCKET_NAME)),
    listen: merged.listen ? parseListen(merged.listen) : null,
    metrics: merged.metrics ? parseListen(merged.metrics, 'metrics') : null,
    logLevel,
    autoextendThreshold: parseAutoextend('threshold', merged.autoextendThreshold, DEFAULT_AUTOEXTEND_THRESHOLD),
    autoextendPercent: parseAutoextend('percent', merged.autoextendPercent, DEFAULT_AUTOEXTEND_PERCENT),
    // Every TLS file is read and checked now, so that a bad one stops the start.
    tls: loadTlsSettings(merged, (message, cause) => new ConfigError(`tls: ${message}`, { cause })),
  };
}
