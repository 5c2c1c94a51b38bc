// --metrics HOST:PORT as the other daemon settings: off by default, a bare port on loopback, and
// flag > environment (NBDSNAP_METRICS) > config file (key "metrics").
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/daemon/config.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metrics-config-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('metrics setting', () => {
  it('is off by default; a bare port binds 127.0.0.1; HOST:PORT and [v6]:PORT as given', () => {
    expect(resolveConfig({}, {}, 1000).metrics).toBeNull();
    expect(resolveConfig({ metrics: '9100' }, {}, 1000).metrics).toEqual({ host: '127.0.0.1', port: 9100 });
    expect(resolveConfig({ metrics: '0.0.0.0:9100' }, {}, 1000).metrics).toEqual({ host: '0.0.0.0', port: 9100 });
    expect(resolveConfig({ metrics: '[::1]:0' }, {}, 1000).metrics).toEqual({ host: '::1', port: 0 });
  });

  it('comes from the config file, then NBDSNAP_METRICS, then the flag', () => {
    const file = path.join(dir, 'conf.json');
    fs.writeFileSync(file, JSON.stringify({ metrics: '9101' }));
    expect(resolveConfig({ config: file }, {}, 1000).metrics).toEqual({ host: '127.0.0.1', port: 9101 });
    expect(resolveConfig({ config: file }, { NBDSNAP_METRICS: '10.0.0.1:9102' }, 1000).metrics).toEqual({ host: '10.0.0.1', port: 9102 });
    expect(resolveConfig({ config: file, metrics: '9103' }, { NBDSNAP_METRICS: '9102' }, 1000).metrics).toEqual({ host: '127.0.0.1', port: 9103 });
  });

  it('refuses a bad address, naming the setting', () => {
    expect(() => resolveConfig({ metrics: 'host:99999' }, {}, 1000)).toThrow(/^metrics: expected HOST:PORT or PORT/);
    expect(() => resolveConfig({}, { NBDSNAP_METRICS: 'nope' }, 1000)).toThrow(/^metrics: expected HOST:PORT or PORT, not "nope"/);
  });
});
