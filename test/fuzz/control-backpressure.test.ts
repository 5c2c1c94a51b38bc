// Control-socket backpressure: a client that pipelines requests and never reads the replies.
// Each request line is capped at 64 KiB; this bounds the number of lines waiting and the replies
// not yet sent. It failed when first written (the daemon reached 450+ MiB in 3 s; see
// docs/security.md, "Found by the fuzzers") and now guards the fix in src/control/server.ts.
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { callDaemon } from '../../src/control/client.ts';
import { startControlFuzz, type ControlFuzzSetup } from '../support/fuzz-control-env.ts';
import { isAlive, rssMiB } from '../support/fuzz-proc.ts';

let setup: ControlFuzzSetup;

beforeAll(async () => {
  setup = await startControlFuzz();
});
afterAll(async () => {
  await setup?.daemon.stop('SIGKILL');
  if (setup) fs.rmSync(setup.env.dir, { recursive: true, force: true });
});

it('control pipelining: requests whose replies are never read keep the daemon RSS < 300 MiB', async () => {
  const pid = setup.daemon.proc.pid!;
  const socket = net.connect(setup.daemon.control);
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  socket.pause(); // never read a reply
  const lines = Buffer.from(`${JSON.stringify({ op: 'snapshot.list' })}\n`.repeat(5000));
  let peak = 0;
  for (const started = Date.now(); Date.now() - started < 3000 && !socket.destroyed;) {
    if (!socket.write(lines)) await Promise.race([new Promise((r) => socket.once('drain', r)), new Promise((r) => setTimeout(r, 200))]);
    peak = Math.max(peak, rssMiB(pid));
  }
  socket.destroy();
  expect(isAlive(pid)).toBe(true);
  expect(await callDaemon(setup.daemon.control, { op: 'daemon.info' })).toMatchObject({ pid });
  expect(peak, 'daemon peak RSS (MiB)').toBeLessThan(300);
});
