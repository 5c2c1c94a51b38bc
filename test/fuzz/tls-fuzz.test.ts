// Hostile input against a server that requires TLS (issue 15): a plaintext attacker before
// STARTTLS (mutated options, random bytes), plaintext injected after STARTTLS, and mutated
// handshakes and requests inside real TLS sessions; after every batch the server is alive, a
// fresh TLS connection reads the export's original bytes, memory is bounded, nothing was logged
// at error level. The cases are in test/support/tls-fuzz.ts.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fuzzTempDir, startServeTarget } from '../support/fuzz-nbd-targets.ts';
import { makeRng } from '../support/prng.ts';
import { makeTlsFixtures } from '../support/tls-certs.ts';
import { trusting } from '../support/tls-client.ts';
import { runTlsCampaign } from '../support/tls-fuzz.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20250115);
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('NBD fuzz, --tls require (CI size)', () => {
  it('nbdsnap serve survives 1600 plaintext, injected-after-STARTTLS and in-TLS hostile cases', async () => {
    const dir = fuzzTempDir('tls');
    dirs.push(dir);
    const certs = makeTlsFixtures(path.join(dir, 'certs'));
    const { srv, target } = await startServeTarget(dir, ['--tls', 'require', '--tls-cert', certs.server.cert, '--tls-key', certs.server.key]);
    try {
      const t = { socket: target.socket, pid: target.pid, name: target.fuzzed.name, model: target.fuzzed.model, tlsOptions: trusting(certs.ca) };
      const rss = await runTlsCampaign(t, makeRng(SEED), { cases: 1600, batchSize: 400, parallel: 12, kinds: ['plain', 'plain', 'inject', 'tls'], rssLimitMiB: 300 });
      expect(rss).toHaveLength(4);
      expect(srv.stderr()).not.toMatch(/"level":(50|60)/);
    } finally {
      expect((await srv.stop()).code).toBe(0);
    }
  });
});
