// The daemon's catalog: which origins and snapshots exist, where their files are, and which step
// of a create/remove is in progress. A synchronous class over better-sqlite3 (WAL, synchronous
// FULL: every change is durable before the method returns, so the daemon can order catalog
// changes against file creation and deletion). The exception tables stay in the COW stores.
import BetterSqlite3 from 'better-sqlite3';
import type { Database, Statement } from 'better-sqlite3';
import type { SnapshotKind } from '../common/snapshot-kind.ts';
import { migrate } from './migrations.ts';

export type OriginState = 'ready' | 'removing';
export type SnapshotState = 'creating' | 'ready' | 'removing';

export interface OriginRow {
  name: string;
  path: string;
  sizeBytes: number;
  state: OriginState;
  createdAt: string;
}

export interface SnapshotRow {
  name: string;
  origin: string;
  cowPath: string;
  kind: SnapshotKind;
  chunkSectors: number;
  /** The daemon created the COW file (snapshot create --size) and deletes it on removal. */
  cowCreated: boolean;
  state: SnapshotState;
  createdAt: string;
  /** Why the snapshot lost its point in time (it missed origin writes); null while intact. */
  failure: string | null;
  /** The snapshot's length: the origin's size when it was taken (null only in rows older than that record). */
  sizeBytes: number | null;
  /** Grow the COW by autoextendPercent when Data% reaches this (1-100; 100 = never); null: the daemon's default. */
  autoextendThreshold: number | null;
  autoextendPercent: number | null;
  /** Set while the snapshot is merging into its origin: its chunk count when the merge started. */
  mergeTotal: number | null;
}

export type NewOrigin = Pick<OriginRow, 'name' | 'path' | 'sizeBytes'>;
export type NewSnapshot = Pick<SnapshotRow, 'name' | 'origin' | 'cowPath' | 'kind' | 'chunkSectors' | 'cowCreated'> &
  Partial<Pick<SnapshotRow, 'sizeBytes' | 'autoextendThreshold' | 'autoextendPercent'>>;

/** A name or path clash (also raised by the schema's triggers and UNIQUE constraints). */
export class CatalogConflictError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CatalogConflictError';
  }
}

const ORIGIN_COLUMNS = 'name, path, size_bytes AS sizeBytes, state, created_at AS createdAt';
const SNAPSHOT_COLUMNS =
  'name, origin, cow_path AS cowPath, kind, chunk_sectors AS chunkSectors, cow_created AS cowCreated, state, created_at AS createdAt, failure, size_bytes AS sizeBytes, ' +
  'autoextend_threshold AS autoextendThreshold, autoextend_percent AS autoextendPercent, merge_total AS mergeTotal';

interface RawSnapshot extends Omit<SnapshotRow, 'cowCreated'> {
  cowCreated: number;
}

function toSnapshot(raw: RawSnapshot | undefined): SnapshotRow | undefined {
  return raw && { ...raw, cowCreated: raw.cowCreated === 1 };
}

function isConstraintError(err: unknown): boolean {
  return err instanceof Error && 'code' in err && String(err.code).startsWith('SQLITE_CONSTRAINT');
}

export class Catalog {
  readonly db: Database;
  private readonly stmt: Record<string, Statement>;

  /** Open (creating if needed) the catalog at `file`, or ':memory:' for tests. */
  constructor(file: string) {
    this.db = new BetterSqlite3(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 2000');
    migrate(this.db);
    const db = this.db;
    this.stmt = {
      origins: db.prepare(`SELECT ${ORIGIN_COLUMNS} FROM origins ORDER BY name`),
      origin: db.prepare(`SELECT ${ORIGIN_COLUMNS} FROM origins WHERE name = ?`),
      insertOrigin: db.prepare(
        `INSERT INTO origins (name, path, size_bytes, state, created_at) VALUES (@name, @path, @sizeBytes, 'ready', @createdAt)`,
      ),
      originState: db.prepare('UPDATE origins SET state = ? WHERE name = ?'),
      originSize: db.prepare('UPDATE origins SET size_bytes = ? WHERE name = ?'),
      deleteOrigin: db.prepare('DELETE FROM origins WHERE name = ?'),
      snapshots: db.prepare(`SELECT ${SNAPSHOT_COLUMNS} FROM snapshots ORDER BY origin, created_at, name`),
      snapshotsOf: db.prepare(`SELECT ${SNAPSHOT_COLUMNS} FROM snapshots WHERE origin = ? ORDER BY created_at, name`),
      snapshot: db.prepare(`SELECT ${SNAPSHOT_COLUMNS} FROM snapshots WHERE name = ?`),
      insertSnapshot: db.prepare(
        `INSERT INTO snapshots (name, origin, cow_path, kind, chunk_sectors, cow_created, state, created_at, size_bytes, autoextend_threshold, autoextend_percent)
         VALUES (@name, @origin, @cowPath, @kind, @chunkSectors, @cowCreated, 'creating', @createdAt, @sizeBytes, @autoextendThreshold, @autoextendPercent)`,
      ),
      snapshotState: db.prepare('UPDATE snapshots SET state = ? WHERE name = ?'),
      snapshotChunk: db.prepare('UPDATE snapshots SET chunk_sectors = ? WHERE name = ?'),
      snapshotSize: db.prepare('UPDATE snapshots SET size_bytes = ? WHERE name = ?'),
      snapshotMerge: db.prepare('UPDATE snapshots SET merge_total = ? WHERE name = ?'),
      snapshotAutoextend: db.prepare('UPDATE snapshots SET autoextend_threshold = ?, autoextend_percent = ? WHERE name = ?'),
      snapshotFailure: db.prepare('UPDATE snapshots SET failure = ? WHERE name = ? AND failure IS NULL'),
      deleteSnapshot: db.prepare('DELETE FROM snapshots WHERE name = ?'),
      nameOwner: db.prepare(
        `SELECT 'origin' AS kind FROM origins WHERE name = @v UNION ALL SELECT 'snapshot' FROM snapshots WHERE name = @v`,
      ),
      pathOwner: db.prepare(
        `SELECT name FROM origins WHERE path = @v UNION ALL SELECT name FROM snapshots WHERE cow_path = @v`,
      ),
    };
  }

  listOrigins(): OriginRow[] {
    return this.stmt.origins.all() as OriginRow[];
  }

  getOrigin(name: string): OriginRow | undefined {
    return this.stmt.origin.get(name) as OriginRow | undefined;
  }

  /** Insert a ready origin. Throws CatalogConflictError if the name or path is taken. */
  addOrigin(origin: NewOrigin): OriginRow {
    this.guardConflict(() => this.stmt.insertOrigin.run({ ...origin, createdAt: new Date().toISOString() }));
    return this.getOrigin(origin.name)!;
  }

  setOriginState(name: string, state: OriginState): void {
    this.stmt.originState.run(state, name);
  }

  setOriginSize(name: string, sizeBytes: number): void {
    this.stmt.originSize.run(sizeBytes, name);
  }

  /** Delete an origin row; its snapshot rows must be gone already (foreign key). */
  deleteOrigin(name: string): void {
    this.stmt.deleteOrigin.run(name);
  }

  listSnapshots(origin?: string): SnapshotRow[] {
    const rows = (origin === undefined ? this.stmt.snapshots.all() : this.stmt.snapshotsOf.all(origin)) as RawSnapshot[];
    return rows.map((raw) => toSnapshot(raw)!);
  }

  getSnapshot(name: string): SnapshotRow | undefined {
    return toSnapshot(this.stmt.snapshot.get(name) as RawSnapshot | undefined);
  }

  /** Insert a snapshot in state 'creating' (not served until setSnapshotState(name, 'ready')). */
  beginSnapshot(snapshot: NewSnapshot): SnapshotRow {
    const row = {
      sizeBytes: null,
      autoextendThreshold: null,
      autoextendPercent: null,
      ...snapshot,
      cowCreated: snapshot.cowCreated ? 1 : 0,
      createdAt: new Date().toISOString(),
    };
    this.guardConflict(() => this.stmt.insertSnapshot.run(row));
    return this.getSnapshot(snapshot.name)!;
  }

  /** Move a snapshot to `state`, recording the store's effective chunk size when given (header wins). */
  setSnapshotState(name: string, state: SnapshotState, chunkSectors?: number): void {
    this.db.transaction(() => {
      if (chunkSectors !== undefined) this.stmt.snapshotChunk.run(chunkSectors, name);
      this.stmt.snapshotState.run(state, name);
    })();
  }

  /** Record a snapshot's length (rows made before lengths were recorded get it at the next start). */
  setSnapshotSize(name: string, sizeBytes: number): void {
    this.stmt.snapshotSize.run(sizeBytes, name);
  }

  /** Mark a snapshot as merging (with its chunk count at the start), for good until its row is deleted. */
  setSnapshotMerging(name: string, totalChunks: number): void {
    this.stmt.snapshotMerge.run(totalChunks, name);
  }

  /** Set a snapshot's auto-extend policy (null: the daemon's default). */
  setSnapshotAutoextend(name: string, threshold: number | null, percent: number | null): void {
    this.stmt.snapshotAutoextend.run(threshold, percent, name);
  }

  /** Record, for good, that a snapshot missed origin writes (the first reason is kept). */
  setSnapshotFailure(name: string, reason: string): void {
    this.stmt.snapshotFailure.run(reason, name);
  }

  deleteSnapshot(name: string): void {
    this.stmt.deleteSnapshot.run(name);
  }

  /** Which table holds `name`, if any (names are unique across origins and snapshots). */
  nameOwner(name: string): 'origin' | 'snapshot' | undefined {
    const row = this.stmt.nameOwner.get({ v: name }) as { kind: 'origin' | 'snapshot' } | undefined;
    return row?.kind;
  }

  /** The origin or snapshot that uses `path` (as stored: a real path), if any. */
  pathOwner(path: string): string | undefined {
    return (this.stmt.pathOwner.get({ v: path }) as { name: string } | undefined)?.name;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private guardConflict(run: () => unknown): void {
    try {
      run();
    } catch (err) {
      if (isConstraintError(err)) throw new CatalogConflictError((err as Error).message, { cause: err });
      throw err;
    }
  }
}
