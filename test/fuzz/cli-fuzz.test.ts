// Hostile input, CLI side (issue 7): random argument vectors for the client commands, run
// against a live daemon. Whatever the arguments, the CLI exits with one of the documented codes
// (`nbdsnap --help`), never prints a stack trace or "internal error", and creates no stray files.
// `serve`, `daemon`, `attach` and `detach` are left out: they start servers or run nbd-client.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/daemon-harness.ts';
import { SENTINEL } from '../support/fuzz-control-gen.ts';
import { startControlFuzz, strayFiles, type ControlFuzzSetup } from '../support/fuzz-control-env.ts';
import { isAlive } from '../support/fuzz-proc.ts';
import { makeRng, type Rng } from '../support/prng.ts';

const RUNS = 30;
const DOCUMENTED_EXIT_CODES = [0, 1, 2, 3, 4, 5, 6, 7, 8];
let setup: ControlFuzzSetup;

beforeAll(async () => {
  setup = await startControlFuzz();
});
afterAll(async () => {
  expect((await setup?.daemon.stop())?.code).toBe(0);
  if (setup) fs.rmSync(setup.env.dir, { recursive: true, force: true });
});

const COMMANDS = [['origin', 'add'], ['origin', 'remove'], ['origin', 'list'], ['snapshot', 'create'], ['snapshot', 'remove'], ['snapshot', 'list'], ['status'], ['table'], ['origin'], ['bogus'], []];
const OPTIONS = ['--origin', '--size', '--cow', '--persistent', '--chunk-size', '--force', '--json', '--bogus', '-x', '--', '--size=', '--help', '-h', '--version'];

function hostileArg(rng: Rng): string {
  return rng.pick([
    'o', 's', `${SENTINEL}-${rng.int(0, 999)}`, `../../${SENTINEL}`, `a/${SENTINEL}`, '/etc/passwd', '/dev/null', setup.env.files[1],
    '-1', '0', '1e3', '4K', '1.5M', '1M', '512', '99999999999999999999T', '0x10', 'NaN', 'Infinity', 'P', 'PO', 'N', 'X',
    '', ' ', '\n', '\u202e', `$(touch /tmp/${SENTINEL})`, 'x'.repeat(rng.pick([129, 5000])), '%s%n', '--', '-',
  ]);
}

function randomArgv(rng: Rng): string[] {
  const argv = [...rng.pick(COMMANDS)];
  for (let n = rng.int(0, 6); n > 0; n--) argv.push(rng.chance(0.4) ? rng.pick(OPTIONS) : hostileArg(rng));
  return argv;
}

describe('CLI fuzz', () => {
  it(`${RUNS} random argument vectors: documented exit codes, no stack traces, no stray files`, async () => {
    const rng = makeRng(Number(process.env.FUZZ_SEED ?? 99));
    const env = { NBDSNAP_CONTROL: setup.daemon.control, NBDSNAP_DATA_DIR: setup.env.dataDir };
    const codes = new Set<number>();
    for (let i = 0; i < RUNS; i += 2) {
      const argvs = [randomArgv(rng), randomArgv(rng)];
      const results = await Promise.all(argvs.map((argv) => runCli(argv, env)));
      results.forEach((r, k) => {
        const what = `nbdsnap ${JSON.stringify(argvs[k])} exited ${r.code}: ${r.stderr}`;
        expect(DOCUMENTED_EXIT_CODES, what).toContain(r.code);
        expect(r.stderr, what).not.toMatch(/^\s+at /m);
        expect(r.stderr, what).not.toMatch(/internal error/i);
        if (r.code !== 0) expect(r.stderr.trim(), what).not.toBe('');
        codes.add(r.code!);
      });
    }
    expect([...codes]).toEqual(expect.arrayContaining([0, 2]));
    expect(isAlive(setup.daemon.proc.pid!)).toBe(true);
    expect(strayFiles(setup.env)).toEqual([]);
  });

  it('documented codes for typical mistakes: usage 2, no such name 3, invalid value 7, unreachable 6', async () => {
    const env = { NBDSNAP_CONTROL: setup.daemon.control };
    const cases: [string[], number][] = [
      [['bogus'], 2],
      [['origin', 'add', 'x'], 2],
      [['snapshot', 'remove', 'nope'], 3],
      [['snapshot', 'create', 'x', '--origin', 'o', '--size', '-1'], 7],
      [['origin', 'add', `../${SENTINEL}`, setup.env.files[1]], 7],
      [['status', '--control', `${setup.env.dir}/no.sock`], 6],
    ];
    for (const [argv, code] of cases) {
      const r = await runCli(argv, env);
      expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(code);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
  });
});
