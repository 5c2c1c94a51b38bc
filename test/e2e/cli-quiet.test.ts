// The README's way to run the CLI, `npx nbdsnap ...`, prints nbdsnap's own output and nothing
// from npm, when npm is the system's (on a Node older than the project's, as on Debian) and
// runs as a new user would run it. And bin/nbdsnap, without the project's Node, says what to do.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../support/exec.ts';

const root = path.resolve(import.meta.dirname, '../..');
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nbdsnap-quiet-'));
  fs.writeFileSync(path.join(dir, 'empty-npmrc'), '');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * The environment of a user's shell: `npm test` puts node_modules/.bin (with the project's
 * Node 24) first on PATH and sets npm_* variables; a user's shell has neither, so `npx` and the
 * `node` it runs on are the system's.
 */
function userEnv(cache: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.toLowerCase().startsWith('npm_') && k !== 'NODE_OPTIONS') env[k] = v;
  }
  env.PATH = (process.env.PATH ?? '').split(':').filter((p) => p && !p.includes('node_modules')).join(':');
  // A new user: no ~/.npmrc, and an empty npm cache, so npx takes its first-run path (it
  // "installs" the project into its cache, where npm checks engines).
  env.npm_config_userconfig = path.join(dir, 'empty-npmrc');
  env.npm_config_cache = cache;
  return env;
}

/** `npx nbdsnap ARGS` from the project root, with a fresh npm cache. */
async function npx(args: string[]) {
  const cache = fs.mkdtempSync(path.join(dir, 'npm-cache-'));
  return run('sh', ['-c', 'cd "$0" && exec npx nbdsnap "$@"', root, ...args], { env: userEnv(cache) });
}

describe('npx nbdsnap with the system npm', () => {
  it('--help prints the help and nothing else', async () => {
    const direct = await run(path.join(root, 'bin/nbdsnap'), ['--help']);
    expect(direct.code).toBe(0);
    expect(direct.stdout).toMatch(/^Usage: nbdsnap /);

    const r = await npx(['--help']);
    expect(r.stderr, 'npm must print nothing (npm warn EBADENGINE, notices)').toBe('');
    expect(r.stderr).not.toMatch(/npm (warn|notice)|EBADENGINE/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(direct.stdout);
  });

  it('status without a daemon prints only nbdsnap\'s one-line error', async () => {
    const control = path.join(dir, 'no-daemon', 'control.sock');
    const r = await npx(['status', '--control', control]);
    expect(r.code).toBe(6);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`nbdsnap: cannot reach the daemon at ${control} (ENOENT); is \`nbdsnap daemon\` running?\n`);
  });
});

describe('bin/nbdsnap without the project\'s Node (node_modules/node)', () => {
  /** A copy of the launcher in a checkout with no node_modules, and a fake `node` on PATH. */
  function launcherWithNode(version: string) {
    const base = fs.realpathSync(fs.mkdtempSync(path.join(dir, 'checkout-')));
    fs.mkdirSync(path.join(base, 'bin'));
    fs.mkdirSync(path.join(base, 'fake-bin'));
    fs.copyFileSync(path.join(root, 'bin/nbdsnap'), path.join(base, 'bin/nbdsnap'));
    fs.chmodSync(path.join(base, 'bin/nbdsnap'), 0o755);
    const fake = path.join(base, 'fake-bin/node');
    fs.writeFileSync(fake, `#!/bin/sh\nif [ "$1" = --version ]; then echo ${version}; else echo "ran: $*"; fi\n`);
    fs.chmodSync(fake, 0o755);
    const env = { ...process.env, PATH: `${path.join(base, 'fake-bin')}:/usr/bin:/bin` };
    return { base, run: (args: string[]) => run(path.join(base, 'bin/nbdsnap'), args, { env }) };
  }

  it('refuses an older node on PATH with one line saying to run npm install', async () => {
    const l = launcherWithNode('v20.20.2');
    const r = await l.run(['--help']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^nbdsnap: the project's Node 24 is not installed \(run 'npm install' in .*\), .*v20\.20\.2.*Node >= 22\.18/);
    expect(r.stderr).toContain(`npm install' in ${l.base})`);
  });

  it('runs the CLI on a node on PATH that can run TypeScript', async () => {
    for (const version of ['v22.18.0', 'v24.1.0', 'v26.0.0']) {
      const l = launcherWithNode(version);
      const r = await l.run(['status', '--json']);
      expect({ version, ...r }).toEqual({ version, code: 0, stdout: `ran: ${l.base}/src/cli/main.ts status --json\n`, stderr: '' });
    }
  });
});
