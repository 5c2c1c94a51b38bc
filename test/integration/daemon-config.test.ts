// Daemon settings: defaults without root or a config file, and defaults < file < env < flags.
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveConfig, parseListen, ConfigError } from '../../src/daemon/config.ts';
import { defaultControlPath, defaultDataDir } from '../../src/control/defaults.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemon-config-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('defaults', () => {
  it('puts everything under the XDG state dir for a user and /var/lib for root', () => {
    expect(defaultDataDir({ HOME: '/home/u' }, 1000)).toBe('/home/u/.local/state/nbdsnap');
    expect(defaultDataDir({ HOME: '/home/u', XDG_STATE_HOME: '/xdg' }, 1000)).toBe('/xdg/nbdsnap');
    expect(defaultDataDir({ HOME: '/root' }, 0)).toBe('/var/lib/nbdsnap');
    expect(defaultDataDir({ NBDSNAP_DATA_DIR: '/d' }, 0)).toBe('/d');
    expect(resolveConfig({}, { HOME: '/home/u' }, 1000)).toEqual({
      dataDir: '/home/u/.local/state/nbdsnap',
      nbdSocket: '/home/u/.local/state/nbdsnap/nbd.sock',
      controlSocket: '/home/u/.local/state/nbdsnap/control.sock',
      listen: null,
      metrics: null,
      logLevel: 'info',
      autoextendThreshold: 100,
      autoextendPercent: 20,
    });
  });

  it('lets clients find the daemon the same way', () => {
    expect(defaultControlPath({ NBDSNAP_CONTROL: '/c.sock' })).toBe('/c.sock');
    expect(defaultControlPath({ NBDSNAP_DATA_DIR: '/d' })).toBe('/d/control.sock');
  });
});

describe('precedence', () => {
  const file = path.join(dir, 'conf', 'nbdsnap.json');
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(file, JSON.stringify({ dataDir: 'state', listen: '10809', logLevel: 'warn', socket: '/f/nbd.sock' }));

  it('reads the config file, resolving its paths relative to the file', () => {
    const c = resolveConfig({ config: file }, {}, 1000);
    expect(c).toMatchObject({ dataDir: path.join(dir, 'conf', 'state'), listen: { host: '127.0.0.1', port: 10809 }, logLevel: 'warn', nbdSocket: '/f/nbd.sock' });
    expect(c.controlSocket).toBe(path.join(dir, 'conf', 'state', 'control.sock'));
  });

  it('env beats the file and flags beat env', () => {
    const env = { NBDSNAP_CONFIG: file, NBDSNAP_DATA_DIR: '/env', NBDSNAP_LOG_LEVEL: 'debug', NBDSNAP_LISTEN: '0.0.0.0:1' };
    expect(resolveConfig({}, env, 1000)).toMatchObject({ dataDir: '/env', logLevel: 'debug', listen: { host: '0.0.0.0', port: 1 }, nbdSocket: '/f/nbd.sock' });
    expect(resolveConfig({ dataDir: '/flag', logLevel: 'error', socket: '/s.sock', control: '/c.sock' }, env, 1000)).toMatchObject({
      dataDir: '/flag',
      logLevel: 'error',
      nbdSocket: '/s.sock',
      controlSocket: '/c.sock',
    });
  });

  it.each([
    ['unknown key', { dataDir: '/x', colour: 'blue' }, /unknown key "colour"/],
    ['non-string value', { listen: 10809 }, /listen must be a string/],
    ['not an object', [1], /not a JSON object/],
  ])('refuses a config file with %s', (_what, content, message) => {
    const bad = path.join(dir, `bad-${Math.random()}.json`);
    fs.writeFileSync(bad, JSON.stringify(content));
    expect(() => resolveConfig({ config: bad }, {}, 1000)).toThrow(message);
  });

  it('refuses a missing or unparsable file, a bad listen address and a bad log level', () => {
    expect(() => resolveConfig({ config: path.join(dir, 'none.json') }, {}, 1000)).toThrow(ConfigError);
    fs.writeFileSync(path.join(dir, 'broken.json'), '{');
    expect(() => resolveConfig({ config: path.join(dir, 'broken.json') }, {}, 1000)).toThrow(ConfigError);
    expect(() => resolveConfig({ logLevel: 'loud' }, {}, 1000)).toThrow(/log level/);
    expect(() => resolveConfig({ listen: 'host:99999' }, {}, 1000)).toThrow(/HOST:PORT/);
  });

  it('takes auto-extend defaults from the file (numbers or strings), the environment and flags, in range only', () => {
    const conf = path.join(dir, `auto-${Math.random()}.json`);
    fs.writeFileSync(conf, JSON.stringify({ autoextendThreshold: 70, autoextendPercent: '30' }));
    expect(resolveConfig({ config: conf }, {}, 1000)).toMatchObject({ autoextendThreshold: 70, autoextendPercent: 30 });
    expect(resolveConfig({ config: conf }, { NBDSNAP_AUTOEXTEND_THRESHOLD: '80' }, 1000)).toMatchObject({ autoextendThreshold: 80 });
    expect(resolveConfig({ config: conf, autoextendPercent: '5' }, {}, 1000)).toMatchObject({ autoextendPercent: 5 });
    expect(() => resolveConfig({ autoextendThreshold: '0' }, {}, 1000)).toThrow(/autoextend threshold: must be 1 to 100/);
    expect(() => resolveConfig({ autoextendPercent: '2x' }, {}, 1000)).toThrow(ConfigError);
    fs.writeFileSync(conf, JSON.stringify({ autoextendThreshold: true }));
    expect(() => resolveConfig({ config: conf }, {}, 1000)).toThrow(/string or a number/);
  });
});

describe('parseListen', () => {
  it.each([
    ['10809', { host: '127.0.0.1', port: 10809 }],
    ['0.0.0.0:10809', { host: '0.0.0.0', port: 10809 }],
    ['[::1]:0', { host: '::1', port: 0 }],
    ['localhost:1', { host: 'localhost', port: 1 }],
  ])('%s', (text, expected) => expect(parseListen(text)).toEqual(expected));
  it.each(['', 'host:', ':1', 'a:b', '65536', '::1:80'])('refuses %j', (text) => expect(() => parseListen(text)).toThrow(ConfigError));
});
