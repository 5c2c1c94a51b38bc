// Hostile input, control side (issue 7): random and mutated JSON lines to the daemon's control
// socket. Every reply must be well-formed, the daemon must stay up with bounded memory, the
// catalog must hold exactly what was accepted, and no file may appear outside <data-dir>/cow/
// (nor a COW there without its catalog row). scripts/fuzz-control.ts runs the long mode.
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/client.ts';
import { MAX_REQUEST_BYTES } from '../../src/control/api.ts';
import { diskProblems, ownFiles } from '../support/fuzz-control-checks.ts';
import { startControlFuzz, type ControlFuzzSetup } from '../support/fuzz-control-env.ts';
import { exchange, fuzzConnection, newTally } from '../support/fuzz-control-run.ts';
import { isAlive, rssMiB } from '../support/fuzz-proc.ts';
import { makeRng } from '../support/prng.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 424242);
const CONNECTIONS = 2000;
let setup: ControlFuzzSetup;
let ownBefore: string[];

beforeAll(async () => {
  setup = await startControlFuzz();
  ownBefore = ownFiles(setup.env);
});
afterAll(async () => {
  expect((await setup?.daemon.stop())?.code).toBe(0);
  if (setup) fs.rmSync(setup.env.dir, { recursive: true, force: true });
});

describe('control API fuzz', () => {
  it('the control socket is 0600 and the data dir 0700', () => {
    expect(fs.statSync(setup.daemon.control).mode & 0o777).toBe(0o600);
    expect(fs.statSync(setup.daemon.nbdSocket).mode & 0o777).toBe(0o600);
    expect(fs.statSync(setup.env.dataDir).mode & 0o777).toBe(0o700);
  });

  it(`${CONNECTIONS} connections of mutated request lines: well-formed replies, daemon up, catalog and disk consistent`, async () => {
    const rng = makeRng(SEED);
    const tally = newTally();
    const pid = setup.daemon.proc.pid!;
    const rssBefore = rssMiB(pid);
    for (let done = 0; done < CONNECTIONS; done += 4) {
      await Promise.all([0, 1, 2, 3].map(() => fuzzConnection(setup.daemon.control, setup.env, rng, tally)));
      if (done % 100 === 0) expect(isAlive(pid)).toBe(true);
    }
    expect(await callDaemon(setup.daemon.control, { op: 'daemon.info' })).toMatchObject({ pid });
    expect(rssMiB(pid) - rssBefore).toBeLessThan(100);
    expect(tally.lines).toBeGreaterThan(CONNECTIONS);
    expect(Object.keys(tally.refused)).toEqual(expect.arrayContaining(['BAD_REQUEST', 'INVALID', 'NOT_FOUND']));
    expect(diskProblems(setup.env, tally, ['o', 's'], ownBefore)).toEqual([]);
  });

  it('a line of exactly the cap is answered; one byte more gets BAD_REQUEST and the connection is closed', async () => {
    const padded = (n: number): Buffer => {
      const base = '{"op":"origin.list"}';
      return Buffer.from(base.slice(0, -1) + ' '.repeat(n - base.length) + '}');
    };
    const atCap = await exchange(setup.daemon.control, [padded(MAX_REQUEST_BYTES)], 1);
    expect(JSON.parse(atCap[0].text).ok).toBe(true);
    for (const withNewline of [true, false]) {
      const socket = net.connect(setup.daemon.control);
      const text: string[] = [];
      socket.on('data', (d) => text.push(d.toString()));
      const closed = new Promise<void>((r) => socket.on('close', () => r()));
      socket.write(Buffer.concat([padded(MAX_REQUEST_BYTES + 1), Buffer.from(withNewline ? '\n' : '')]));
      await closed;
      expect(JSON.parse(text.join('')).error.code).toBe('BAD_REQUEST');
    }
    expect(isAlive(setup.daemon.proc.pid!)).toBe(true);
  });
});
