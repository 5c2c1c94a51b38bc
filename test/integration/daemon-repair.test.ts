// Startup repair on its own: a catalog left mid-create or mid-remove is rolled back or finished,
// deleting only the COW files the daemon created.
import { describe, it, expect, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Catalog } from '../../src/catalog/catalog.ts';
import { repairCatalog } from '../../src/daemon/repair.ts';
import { silentLogger } from '../../src/log.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemon-repair-'));
  dirs.push(dir);
  const file = (n: string) => {
    const p = path.join(dir, n);
    fs.writeFileSync(p, 'x');
    return p;
  };
  const c = new Catalog(':memory:');
  c.addOrigin({ name: 'o', path: file('o.img'), sizeBytes: 4096 });
  c.addOrigin({ name: 'gone', path: file('gone.img'), sizeBytes: 4096 });
  const snap = (name: string, origin: string, cowCreated: boolean, state?: 'ready' | 'removing') => {
    c.beginSnapshot({ name, origin, cowPath: file(`${name}.cow`), kind: 'P', chunkSectors: 8, cowCreated });
    if (state) c.setSnapshotState(name, state);
  };
  snap('ready', 'o', true, 'ready');
  snap('creating-own', 'o', true);
  snap('creating-ext', 'o', false);
  snap('removing-own', 'o', true, 'removing');
  snap('removing-ext', 'o', false, 'removing');
  snap('g1', 'gone', true, 'ready');
  snap('g2', 'gone', false, 'ready');
  c.setOriginState('gone', 'removing');
  return { dir, c, exists: (n: string) => fs.existsSync(path.join(dir, n)) };
}

describe('repairCatalog', () => {
  it('rolls back creates, finishes removes, and deletes only COW files it created', () => {
    const { c, exists } = setup();
    const report = repairCatalog(c, silentLogger());
    expect(report.rolledBack.sort()).toEqual(['creating-ext', 'creating-own']);
    expect(report.finished.sort()).toEqual(['g1', 'g2', 'gone', 'removing-ext', 'removing-own']);
    expect(c.listOrigins().map((o) => o.name)).toEqual(['o']);
    expect(c.listSnapshots().map((s) => s.name)).toEqual(['ready']);
    expect(['ready.cow', 'creating-ext.cow', 'removing-ext.cow', 'g2.cow', 'o.img', 'gone.img'].filter(exists)).toHaveLength(6);
    expect(['creating-own.cow', 'removing-own.cow', 'g1.cow'].filter(exists)).toEqual([]);
  });

  it('is idempotent (a crash during repair is repaired by the next start)', () => {
    const { c } = setup();
    repairCatalog(c, silentLogger());
    expect(repairCatalog(c, silentLogger())).toEqual({ rolledBack: [], finished: [] });
  });
});
