// The control API between the CLI and the daemon: one JSON object per line each way over a 0600
// Unix socket. A request is {op, ...fields}; the reply is {ok: true, result} or
// {ok: false, error: {code, message}}. Every field is checked in validate.ts before a handler
// runs; handlers (daemon/handlers.ts) receive these types already validated.
import type { SnapshotKind } from '../common/snapshot-kind.ts';

/** Part of the API's vocabulary; defined in common/snapshot-kind.ts. */
export type { SnapshotKind };

export interface RequestMap {
  /** Where the daemon listens (the CLI's attach needs the NBD socket), pid, version. */
  'daemon.info': Record<never, never>;
  'origin.add': { name: string; path: string };
  'origin.remove': { name: string; force?: boolean };
  'origin.list': Record<never, never>;
  /** Exactly one of cow (existing file or block device) and sizeBytes (create <data-dir>/cow/<name>.cow). */
  'snapshot.create': {
    name: string;
    origin: string;
    cow?: string;
    sizeBytes?: number;
    kind?: SnapshotKind;
    chunkSectors?: number;
    /** Auto-extend (only with sizeBytes): Data% that triggers growth (100 = off), growth in percent. */
    autoextendThreshold?: number;
    autoextendPercent?: number;
  };
  /** Grow the COW to sizeBytes, or by growBytes (exactly one). */
  'snapshot.resize': { name: string; sizeBytes?: number; growBytes?: number };
  /** Start merging a snapshot into its origin (force: disconnect its clients). */
  'snapshot.merge': { name: string; force?: boolean };
  'snapshot.remove': { name: string; force?: boolean };
  'snapshot.list': { origin?: string };
  /** The snapshot's changed extents (its changed-chunk map, merged). */
  'snapshot.diff': { name: string };
  'status': { name?: string };
  'table': { name?: string };
  /**
   * Live restart: start a successor from the code installed now and hand it every socket. With
   * wait, answered once the successor serves (or failed); else once it has been started.
   */
  'daemon.restart': { wait?: boolean; timeoutMs?: number };
}

export type Op = keyof RequestMap;
export type Request<K extends Op = Op> = K extends Op ? { op: K } & RequestMap[K] : never;

export interface DaemonInfo {
  version: string;
  pid: number;
  dataDir: string;
  controlSocket: string;
  nbdSocket: string;
  tcp: { host: string; port: number } | null;
  /** The Prometheus /metrics HTTP listener (--metrics), port 0 resolved; null when off. */
  metrics: { host: string; port: number } | null;
}

/** 'failed': the catalog has it but it could not be opened (see error). */
export type ExportState = 'active' | 'failed';

export interface OriginInfo {
  name: string;
  path: string;
  sizeBytes: number;
  state: ExportState;
  error: string | null;
  snapshots: string[];
  connections: number;
  createdAt: string;
}

/**
 * active/invalid/overflow follow the store; failed: the COW could not be opened at startup;
 * merging: being merged into its origin, or merged (100%) and being removed; merge-failed: the
 * merge, or removing the merged snapshot, failed (error says why); removing: detached by a
 * remove that is finishing (its row and COW are going).
 */
export type SnapshotState = 'active' | 'invalid' | 'overflow' | 'failed' | 'merging' | 'merge-failed' | 'removing';

export interface SnapshotInfo {
  name: string;
  origin: string;
  cowPath: string;
  /** The daemon created the COW file (and deletes it on removal). */
  cowCreated: boolean;
  kind: SnapshotKind;
  chunkSectors: number;
  /** The snapshot's length: the origin's size when it was taken. */
  sizeBytes: number;
  cowSizeBytes: number | null;
  /** The auto-extend policy in force (null: off, or an external COW), and how often the COW grew since the daemon started. */
  autoextend: { threshold: number; percent: number; extensions: number } | null;
  /** While merging into its origin: progress in chunks and percent (MERGE%); null otherwise. */
  merge: { percent: number; mergedChunks: number; totalChunks: number; mergedBytes: number; totalBytes: number } | null;
  /** Like lvs Snap%: allocated/total, 0 when only metadata is allocated; null when unknown. */
  dataPercent: number | null;
  allocatedSectors: number | null;
  totalSectors: number | null;
  metadataSectors: number | null;
  state: SnapshotState;
  error: string | null;
  connections: number;
  createdAt: string;
}

/**
 * What changed since a snapshot was taken, in the origin or in the snapshot: its exceptions
 * (pending ones included) as merged byte extents, in order. docs/incremental-backup.md.
 */
export interface SnapshotDiff {
  name: string;
  origin: string;
  /** The snapshot's length. */
  sizeBytes: number;
  chunkBytes: number;
  /** The sum of the extents' lengths. */
  changedBytes: number;
  extents: { offset: number; length: number }[];
}

/** One `dmsetup status` line: `name: start sectors target info`. */
export interface StatusLine {
  name: string;
  start: 0;
  sectors: number;
  target: 'snapshot-origin' | 'snapshot' | 'snapshot-merge';
  info: string;
}

/** One `dmsetup table` line: `name: start sectors target args...` (names/paths where dm prints maj:min). */
export interface TableLine {
  name: string;
  start: 0;
  sectors: number;
  target: 'snapshot-origin' | 'snapshot' | 'snapshot-merge';
  args: string[];
}

/** How a live restart went (daemon.restart). */
export interface RestartResult {
  /** 'started': the successor runs and the handover goes on; 'done': the successor serves. */
  state: 'started' | 'done';
  previousPid: number;
  pid: number;
  /** With 'done': NBD connections handed over, and those closed instead (still negotiating). */
  connections?: number;
  closed?: number;
  /**
   * With 'done': how many of `connections` use TLS. Their keys cannot leave a process, so the
   * previous daemon stays (pid previousPid) to relay them to the successor until they end.
   */
  relayed?: number;
  /** With 'done': milliseconds from the pause of the first connection to the successor serving. */
  pauseMs?: number;
}

export interface ResultMap {
  'daemon.info': DaemonInfo;
  'origin.add': OriginInfo;
  'origin.remove': { removed: string[] };
  'origin.list': OriginInfo[];
  'snapshot.create': SnapshotInfo;
  'snapshot.remove': { removed: string[] };
  'snapshot.resize': SnapshotInfo;
  'snapshot.merge': SnapshotInfo;
  'snapshot.list': SnapshotInfo[];
  'snapshot.diff': SnapshotDiff;
  'status': StatusLine[];
  'table': TableLine[];
  'daemon.restart': RestartResult;
}

export const ERROR_CODES = ['BAD_REQUEST', 'INVALID', 'NOT_FOUND', 'EXISTS', 'BUSY', 'SHUTTING_DOWN', 'RESTARTING', 'RESTART_FAILED', 'INTERNAL'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export type Reply<K extends Op = Op> =
  | { ok: true; result: ResultMap[K] }
  | { ok: false; error: { code: ErrorCode; message: string } };

/** A failure with a code the client maps to an exit status. Thrown by validation and handlers. */
export class ControlError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ControlError';
    this.code = code;
  }
}

export type Handler<K extends Op> = (request: Request<K>) => Promise<ResultMap[K]>;
export type Handlers = { [K in Op]: Handler<K> };

/** Longest request line the daemon accepts (bytes, newline excluded). */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** Longest reply line the client accepts. */
export const MAX_REPLY_BYTES = 32 * 1024 * 1024;
