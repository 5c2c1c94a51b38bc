// The one place where control requests are checked: a table of fields per op. A request with an
// unknown op, an unknown field, a missing required field or a bad value is refused with
// INVALID/BAD_REQUEST before any handler runs, so handlers can trust their input (checks that
// need the file system or the devices, such as existence and block sizes, are the daemon's).
import path from 'node:path';
import { autoextendProblem } from '../common/autoextend.ts';
import { MAX_CHUNK_SECTORS } from '../common/chunk-sectors.ts';
import { SECTOR_BYTES } from '../common/sectors.ts';
import { isSnapshotKind } from '../common/snapshot-kind.ts';
import { ControlError, type Op, type Request } from './api.ts';

/** Export names: also file names (<data-dir>/cow/<name>.cow) and NBD export names. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
export const MAX_PATH_LENGTH = 4095;

type Check = (value: unknown, field: string) => unknown;

/** How fields are named in messages (the CLI's words, not the wire names). */
const LABELS: Record<string, string> = {
  chunkSectors: 'chunk size',
  sizeBytes: 'size',
  growBytes: 'size',
  kind: 'store type',
  autoextendThreshold: 'autoextend threshold',
  autoextendPercent: 'autoextend percent',
};

function invalid(field: string, message: string): never {
  throw new ControlError('INVALID', `${LABELS[field] ?? field}: ${message}`);
}

export const checks = {
  name(value, field) {
    if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
      invalid(field, `invalid name ${JSON.stringify(value)} (1-128 characters: letters, digits and . _ + -, not starting with a symbol)`);
    }
    return value;
  },
  path(value, field) {
    if (typeof value !== 'string' || value.length === 0) invalid(field, 'a path is required');
    if (value.includes('\0')) invalid(field, 'the path contains a NUL byte');
    if (!path.isAbsolute(value)) invalid(field, `the path must be absolute: ${value}`);
    if (value.length > MAX_PATH_LENGTH) invalid(field, 'the path is too long');
    return path.normalize(value);
  },
  sizeBytes(value, field) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      invalid(field, `the size must be a positive whole number of bytes, not ${JSON.stringify(value)}`);
    }
    if (value % SECTOR_BYTES !== 0) invalid(field, `the size must be a multiple of ${SECTOR_BYTES} bytes, not ${value}`);
    return value;
  },
  chunkSectors(value, field) {
    const ok = typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_CHUNK_SECTORS;
    if (!ok || (value & (value - 1)) !== 0) {
      invalid(field, `must be a power of two from 1 to ${MAX_CHUNK_SECTORS} sectors, not ${JSON.stringify(value)}`);
    }
    return value;
  },
  kind(value, field) {
    if (!isSnapshotKind(value)) invalid(field, `must be P, PO or N, not ${JSON.stringify(value)}`);
    return value;
  },
  autoextendThreshold(value, field) {
    const problem = autoextendProblem('threshold', value);
    if (problem) invalid(field, problem);
    return value;
  },
  autoextendPercent(value, field) {
    const problem = autoextendProblem('percent', value);
    if (problem) invalid(field, problem);
    return value;
  },
  timeoutMs(value, field) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1000 || value > 3_600_000) {
      invalid(field, `must be a whole number of milliseconds from 1000 to 3600000, not ${JSON.stringify(value)}`);
    }
    return value;
  },
  boolean(value, field) {
    if (typeof value !== 'boolean') invalid(field, `must be true or false, not ${JSON.stringify(value)}`);
    return value;
  },
} satisfies Record<string, Check>;

interface FieldSpec {
  check: Check;
  required: boolean;
}
const req = (check: Check): FieldSpec => ({ check, required: true });
const opt = (check: Check): FieldSpec => ({ check, required: false });

interface OpSpec {
  fields: Record<string, FieldSpec>;
  /** Rules across fields, run after every field passed. */
  refine?: (request: Record<string, unknown>) => void;
}

export const REQUEST_SPECS: Record<Op, OpSpec> = {
  'daemon.info': { fields: {} },
  'origin.add': { fields: { name: req(checks.name), path: req(checks.path) } },
  'origin.remove': { fields: { name: req(checks.name), force: opt(checks.boolean) } },
  'origin.list': { fields: {} },
  'snapshot.create': {
    fields: {
      name: req(checks.name),
      origin: req(checks.name),
      cow: opt(checks.path),
      sizeBytes: opt(checks.sizeBytes),
      kind: opt(checks.kind),
      chunkSectors: opt(checks.chunkSectors),
      autoextendThreshold: opt(checks.autoextendThreshold),
      autoextendPercent: opt(checks.autoextendPercent),
    },
    refine(r) {
      if ((r.cow === undefined) === (r.sizeBytes === undefined)) {
        throw new ControlError('INVALID', 'give exactly one of cow (an existing file or device) and size (a new COW file)');
      }
      if (r.cow !== undefined && (r.autoextendThreshold !== undefined || r.autoextendPercent !== undefined)) {
        throw new ControlError('INVALID', 'auto-extend grows only a COW file nbdsnap creates (size); an external cow is resized by its owner');
      }
    },
  },
  'snapshot.merge': { fields: { name: req(checks.name), force: opt(checks.boolean) } },
  'snapshot.resize': {
    fields: { name: req(checks.name), sizeBytes: opt(checks.sizeBytes), growBytes: opt(checks.sizeBytes) },
    refine(r) {
      if ((r.sizeBytes === undefined) === (r.growBytes === undefined)) {
        throw new ControlError('INVALID', 'give exactly one of size (the new COW size) and grow (bytes to add)');
      }
    },
  },
  'snapshot.remove': { fields: { name: req(checks.name), force: opt(checks.boolean) } },
  'snapshot.list': { fields: { origin: opt(checks.name) } },
  'snapshot.diff': { fields: { name: req(checks.name) } },
  'status': { fields: { name: opt(checks.name) } },
  'table': { fields: { name: opt(checks.name) } },
  'daemon.restart': { fields: { wait: opt(checks.boolean), timeoutMs: opt(checks.timeoutMs) } },
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Check a parsed JSON value against the table; returns a normalised copy or throws ControlError. */
export function validateRequest(value: unknown): Request {
  if (!isRecord(value)) throw new ControlError('BAD_REQUEST', 'a request must be a JSON object');
  const op = value.op;
  if (typeof op !== 'string' || !Object.hasOwn(REQUEST_SPECS, op)) {
    throw new ControlError('BAD_REQUEST', `unknown op ${JSON.stringify(op)}`);
  }
  const spec = REQUEST_SPECS[op as Op];
  const out: Record<string, unknown> = { op };
  for (const key of Object.keys(value)) {
    if (key !== 'op' && !Object.hasOwn(spec.fields, key)) throw new ControlError('BAD_REQUEST', `${op}: unknown field ${JSON.stringify(key)}`);
  }
  for (const [key, field] of Object.entries(spec.fields)) {
    const v = value[key];
    if (v === undefined || v === null) {
      if (field.required) invalid(key, 'required');
      continue;
    }
    out[key] = field.check(v, key);
  }
  spec.refine?.(out);
  return out as Request;
}
