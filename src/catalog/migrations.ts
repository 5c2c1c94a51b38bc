// The catalog schema as an ordered list of migrations. PRAGMA user_version records how many have
// been applied; each runs in its own transaction together with the version bump, so a crash
// leaves the database at one version or the next, never in between.
import type { Database } from 'better-sqlite3';

export const MIGRATIONS: readonly string[] = [
  // 1: origins and snapshots. `state` records a step in progress so that startup can finish or
  // roll it back (see daemon/repair.ts). Names are unique across both tables and a path is used
  // by at most one origin or snapshot: the triggers keep that true whatever the caller checked.
  `
  CREATE TABLE origins (
    name       TEXT PRIMARY KEY,
    path       TEXT NOT NULL UNIQUE,
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
    state      TEXT NOT NULL CHECK (state IN ('ready', 'removing')),
    created_at TEXT NOT NULL
  ) STRICT;
  CREATE TABLE snapshots (
    name          TEXT PRIMARY KEY,
    origin        TEXT NOT NULL REFERENCES origins(name),
    cow_path      TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('P', 'PO', 'N')),
    chunk_sectors INTEGER NOT NULL CHECK (chunk_sectors > 0),
    cow_created   INTEGER NOT NULL CHECK (cow_created IN (0, 1)),
    state         TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
    created_at    TEXT NOT NULL
  ) STRICT;
  CREATE INDEX snapshots_by_origin ON snapshots(origin);
  CREATE TRIGGER origins_unique_across BEFORE INSERT ON origins
    WHEN EXISTS (SELECT 1 FROM snapshots WHERE name = NEW.name OR cow_path = NEW.path)
    BEGIN SELECT RAISE(ABORT, 'name or path already used by a snapshot'); END;
  CREATE TRIGGER snapshots_unique_across BEFORE INSERT ON snapshots
    WHEN EXISTS (SELECT 1 FROM origins WHERE name = NEW.name OR path = NEW.cow_path)
    BEGIN SELECT RAISE(ABORT, 'name or path already used by an origin'); END;
  `,
  // 2: a snapshot that could not be attached while its origin was served has missed origin
  // writes for good; `failure` remembers that, so it is never served again even if its COW
  // comes back.
  `
  ALTER TABLE snapshots ADD COLUMN failure TEXT;
  `,
  // 3: a snapshot's length (the origin's size when it was taken; NULL for rows made before this
  // version, filled in at the next start), and its auto-extend policy (NULL: the daemon's default).
  `
  ALTER TABLE snapshots ADD COLUMN size_bytes INTEGER CHECK (size_bytes IS NULL OR size_bytes >= 0);
  ALTER TABLE snapshots ADD COLUMN autoextend_threshold INTEGER CHECK (autoextend_threshold IS NULL OR autoextend_threshold BETWEEN 1 AND 100);
  ALTER TABLE snapshots ADD COLUMN autoextend_percent INTEGER CHECK (autoextend_percent IS NULL OR autoextend_percent > 0);
  `,
  // 4: a snapshot being merged into its origin (snapshot merge): merge_total is how many chunks
  // it had when the merge started (for MERGE%); NULL while it is not merging. A merging snapshot
  // is not served; at start its merge resumes before the origin is served.
  `
  ALTER TABLE snapshots ADD COLUMN merge_total INTEGER CHECK (merge_total IS NULL OR merge_total >= 0);
  `,
];

/** Apply every migration newer than the database's user_version. Returns the final version. */
export function migrate(db: Database): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`catalog schema version ${current} is newer than this nbdsnap (${MIGRATIONS.length})`);
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
  return MIGRATIONS.length;
}
