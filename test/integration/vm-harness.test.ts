// Host-side checks of the VM suite's pure parts (the suite itself runs in the guest:
// scripts/vm-test.sh). The workload must plan exactly the writes shared/fixtures/workload.py
// made (test/data/fixtures, copied from the kernel-made shared fixtures), or the kernel fixtures
// and the differential test would not line up.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ImageModel, ORIGIN, fillOp, parseStatusLine, patternImage, planWorkload } from '../vm/workload.ts';
import { PyRandom } from '../vm/py-random.ts';

const fixtures = process.env.NBDSNAP_FIXTURES ?? path.resolve(import.meta.dirname, '../data/fixtures');

describe('vm workload', () => {
  it.each(['small-cs16', 'multiarea-cs8', 'transient-cs16', 'overflow-cs8'])('plans the writes of fixture %s', (name) => {
    const meta = JSON.parse(fs.readFileSync(path.join(fixtures, `${name}.json`), 'utf8'));
    const listed = fs.readFileSync(path.join(fixtures, `${name}.writes.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const ops = planWorkload({ seed: meta.seed, writes: listed.length, sectors: meta.origin_sectors, snapshots: ['snap'] });
    expect(ops.map((o) => ({ ...o, target: o.target === 'snap' ? 'snap' : 'origin' }))).toEqual(listed);
  });

  it('matches CPython random for seed 0 and a large seed', () => {
    // python3 -c "import random; r=random.Random(0); print(r.random(), r.randrange(1,256))"
    const r = new PyRandom(0);
    expect(r.random()).toBe(0.8444218515250481);
    expect(r.randrange(1, 256)).toBe(195);
    // python3 -c "import random; r=random.Random(2**40+5); print(r.getrandbits(32))"
    expect(new PyRandom(2 ** 40 + 5).getrandbits(32)).toBe(2166296868);
  });

  it('marks every sector of a write and models snapshots separately', () => {
    const buf = Buffer.alloc(64 * 512);
    const data = fillOp(buf, { seq: 7, target: ORIGIN, sector: 3, sectors: 2, fill: 0xaa }, 0x6f);
    expect([...data.subarray(512, 520)]).toEqual([0x57, 7, 0, 0, 0, 0x6f, 0, 0]);
    expect(data[8]).toBe(0xaa);
    const model = new ImageModel(patternImage(16), ['s']).apply([
      { seq: 0, target: ORIGIN, sector: 1, sectors: 1, fill: 1 },
      { seq: 1, target: 's', sector: 2, sectors: 1, fill: 2, error: 'EIO' },
    ]);
    expect(model.images.get(ORIGIN)![512]).toBe(0x57);
    expect(model.images.get('s')!.equals(patternImage(16))).toBe(true);
  });

  it('parses dmsetup and nbdsnap status lines', () => {
    expect(parseStatusLine('0 32768 snapshot 1312/8192 32')).toMatchObject({ length: 32768, state: 'active', allocated: 1312, total: 8192, metadata: 32 });
    expect(parseStatusLine('s1: 0 32768 snapshot Invalid')).toMatchObject({ name: 's1', state: 'Invalid' });
    expect(parseStatusLine('o: 0 32768 snapshot-origin ')).toMatchObject({ name: 'o', target: 'snapshot-origin', info: '' });
  });
});
