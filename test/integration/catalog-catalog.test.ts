import { describe, it, expect, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Catalog, CatalogConflictError } from '../../src/catalog/catalog.ts';
import { MIGRATIONS, migrate } from '../../src/catalog/migrations.ts';

const open: Catalog[] = [];
function memory(): Catalog {
  const c = new Catalog(':memory:');
  open.push(c);
  return c;
}
afterEach(() => {
  for (const c of open.splice(0)) c.close();
});

const snap = (name: string, extra: Partial<Parameters<Catalog['beginSnapshot']>[0]> = {}) => ({
  name,
  origin: 'base',
  cowPath: `/cow/${name}.cow`,
  kind: 'P' as const,
  chunkSectors: 8,
  cowCreated: true,
  ...extra,
});

describe('catalog', () => {
  it('migrates to the latest user_version and is idempotent', () => {
    const c = memory();
    expect(c.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    expect(migrate(c.db)).toBe(MIGRATIONS.length);
  });

  it('refuses a database from a newer nbdsnap', () => {
    const db = new BetterSqlite3(':memory:');
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    expect(() => migrate(db)).toThrow(/newer/);
    db.close();
  });

  it('adds, lists and removes origins', () => {
    const c = memory();
    const row = c.addOrigin({ name: 'base', path: '/data/base.img', sizeBytes: 1 << 20 });
    expect(row).toMatchObject({ name: 'base', path: '/data/base.img', sizeBytes: 1 << 20, state: 'ready' });
    expect(c.listOrigins().map((o) => o.name)).toEqual(['base']);
    c.setOriginSize('base', 2 << 20);
    c.setOriginState('base', 'removing');
    expect(c.getOrigin('base')).toMatchObject({ sizeBytes: 2 << 20, state: 'removing' });
    c.deleteOrigin('base');
    expect(c.getOrigin('base')).toBeUndefined();
  });

  it('tracks a snapshot through creating -> ready -> removing with the effective chunk size', () => {
    const c = memory();
    c.addOrigin({ name: 'base', path: '/data/base.img', sizeBytes: 4096 });
    expect(c.beginSnapshot(snap('s1'))).toMatchObject({ state: 'creating', cowCreated: true, chunkSectors: 8 });
    c.setSnapshotState('s1', 'ready', 16);
    expect(c.getSnapshot('s1')).toMatchObject({ state: 'ready', chunkSectors: 16 });
    c.setSnapshotState('s1', 'removing');
    expect(c.getSnapshot('s1')).toMatchObject({ state: 'removing', chunkSectors: 16 });
    expect(c.listSnapshots('base')).toHaveLength(1);
    expect(c.listSnapshots('other')).toHaveLength(0);
    c.deleteSnapshot('s1');
    expect(c.listSnapshots()).toEqual([]);
  });

  it('keeps names unique across origins and snapshots', () => {
    const c = memory();
    c.addOrigin({ name: 'base', path: '/data/base.img', sizeBytes: 4096 });
    c.beginSnapshot(snap('s1'));
    expect(() => c.addOrigin({ name: 'base', path: '/x', sizeBytes: 1 })).toThrow(CatalogConflictError);
    expect(() => c.addOrigin({ name: 's1', path: '/y', sizeBytes: 1 })).toThrow(CatalogConflictError);
    expect(() => c.beginSnapshot(snap('base', { cowPath: '/z' }))).toThrow(CatalogConflictError);
    expect(() => c.beginSnapshot(snap('s1', { cowPath: '/z' }))).toThrow(CatalogConflictError);
    expect(c.nameOwner('base')).toBe('origin');
    expect(c.nameOwner('s1')).toBe('snapshot');
    expect(c.nameOwner('nope')).toBeUndefined();
  });

  it('keeps paths unique across origins and snapshots', () => {
    const c = memory();
    c.addOrigin({ name: 'base', path: '/data/base.img', sizeBytes: 4096 });
    c.beginSnapshot(snap('s1'));
    expect(() => c.beginSnapshot(snap('s2', { cowPath: '/data/base.img' }))).toThrow(CatalogConflictError);
    expect(() => c.beginSnapshot(snap('s2', { cowPath: '/cow/s1.cow' }))).toThrow(CatalogConflictError);
    expect(() => c.addOrigin({ name: 'o2', path: '/cow/s1.cow', sizeBytes: 1 })).toThrow(CatalogConflictError);
    expect(c.pathOwner('/data/base.img')).toBe('base');
    expect(c.pathOwner('/cow/s1.cow')).toBe('s1');
    expect(c.pathOwner('/nowhere')).toBeUndefined();
  });

  it('refuses a snapshot of an unknown origin and an origin delete while snapshots remain', () => {
    const c = memory();
    expect(() => c.beginSnapshot(snap('s1'))).toThrow(CatalogConflictError);
    c.addOrigin({ name: 'base', path: '/data/base.img', sizeBytes: 4096 });
    c.beginSnapshot(snap('s1'));
    expect(() => c.deleteOrigin('base')).toThrow(/FOREIGN KEY/);
  });

  it('rejects states and kinds outside the schema', () => {
    const c = memory();
    c.addOrigin({ name: 'base', path: '/data/base.img', sizeBytes: 4096 });
    expect(() => c.beginSnapshot(snap('s1', { kind: 'X' as 'P' }))).toThrow(CatalogConflictError);
    c.beginSnapshot(snap('s1'));
    expect(() => c.setSnapshotState('s1', 'bogus' as 'ready')).toThrow(/CHECK/);
    expect(c.getSnapshot('s1')?.state).toBe('creating');
  });

  it('persists in WAL mode across reopen', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemon-catalog-'));
    try {
      const file = path.join(dir, 'catalog.db');
      const a = new Catalog(file);
      expect(a.db.pragma('journal_mode', { simple: true })).toBe('wal');
      a.addOrigin({ name: 'base', path: '/data/base.img', sizeBytes: 4096 });
      a.beginSnapshot(snap('s1', { cowCreated: false }));
      a.close();
      const b = new Catalog(file);
      expect(b.getSnapshot('s1')).toMatchObject({ origin: 'base', cowCreated: false, state: 'creating' });
      b.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
