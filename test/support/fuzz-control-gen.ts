// Request lines for the control-API fuzzer: well-formed requests of every op, then field values
// swapped for hostile ones (wrong types, path traversal, NUL and newline in names, huge strings
// and numbers, prototype keys), and raw-text damage (truncation, invalid UTF-8, random bytes).
// Every file name a request could create carries SENTINEL so the test can look for strays.
import { randomBytes } from './fuzz-mutate.ts';
import type { Rng } from './prng.ts';

export const SENTINEL = 'fuzzsentinel';

export interface ControlFuzzEnv {
  /** The test's temp dir (holds the data dir and the files below). */
  dir: string;
  dataDir: string;
  /** Existing origin and snapshot names. */
  origin: string;
  snapshot: string;
  /** Usable files outside the data dir (an origin image, a zeroed COW candidate). */
  files: string[];
}

function hostileStrings(env: ControlFuzzEnv, rng: Rng): string[] {
  const tag = `${SENTINEL}${rng.int(0, 999)}`;
  return [
    `../../${tag}`, `../${tag}`, `a/${tag}`, `/tmp/${tag}`, `${tag}\0x`, `${tag}\nx`, `${tag}/..`, '..', '.', '', ' ',
    `${env.dataDir}/cow/${tag}.cow`, `${env.dataDir}/../data/catalog.db`, `${env.dataDir}/catalog.db`, `${env.dir}/link-to-data/catalog.db`,
    `${env.dataDir}/control.sock`, '/etc/passwd', '/dev/null', '/proc/self/mem', '/tmp', 'relative.img', '\\..\\..\\x',
    `${tag}\u202e`, '\ud800', 'x'.repeat(rng.pick([129, 4096, 4097, 20_000])), `-${tag}`, `.${tag}`, `${tag}%2f..`, 'CON',
    `${env.origin}\0`, `${env.snapshot}/`, env.origin.toUpperCase(),
  ];
}

function hostileValue(env: ControlFuzzEnv, rng: Rng): unknown {
  switch (rng.int(0, 5)) {
    case 0: return rng.pick([-1, 0, -0, 0.5, 511, 513, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 2 ** 21, 2 ** 22, 3, 512 * rng.int(1, 4096)]);
    case 1: return rng.pick([null, true, false, [], {}, [1, 2], { a: 1 }, '1048576', 'true', 'P', 'PO', 'N', 'p']);
    case 2: return rng.pick(env.files);
    default: return rng.pick(hostileStrings(env, rng));
  }
}

const OPS = ['daemon.info', 'origin.add', 'origin.remove', 'origin.list', 'snapshot.create', 'snapshot.remove', 'snapshot.list', 'snapshot.diff', 'status', 'table'];

/** A plausible request of a random op (valid more often than not, before mutation). */
function template(env: ControlFuzzEnv, rng: Rng): Record<string, unknown> {
  const fresh = `${SENTINEL}-${rng.int(0, 99999)}`;
  const name = rng.pick([fresh, fresh, env.origin, env.snapshot]);
  const op = rng.pick(OPS);
  switch (op) {
    case 'origin.add': return { op, name, path: rng.pick(env.files) };
    case 'origin.remove':
    case 'snapshot.remove': return { op, name: rng.chance(0.8) ? fresh : name, force: rng.chance(0.2) };
    case 'snapshot.create': {
      const store = rng.chance(0.7) ? { sizeBytes: 512 * rng.int(64, 8192) } : { cow: rng.pick(env.files) };
      return { op, name: fresh, origin: rng.chance(0.8) ? env.origin : name, ...store, kind: rng.pick(['P', 'PO', 'N']), chunkSectors: 2 ** rng.int(0, 8) };
    }
    case 'snapshot.list': return rng.chance(0.5) ? { op } : { op, origin: name };
    case 'snapshot.diff':
    case 'status':
    case 'table': return rng.chance(0.5) ? { op } : { op, name };
    default: return { op };
  }
}

/** Field-level damage to a request object. */
function mutateRequest(env: ControlFuzzEnv, rng: Rng, req: Record<string, unknown>): unknown {
  const keys = Object.keys(req);
  const key = rng.pick(keys);
  switch (rng.int(0, 6)) {
    case 0: return { ...req, [key]: hostileValue(env, rng) };
    case 1: return Object.fromEntries(Object.entries(req).filter(([k]) => k !== key));
    case 2: return { ...req, [rng.pick(['extra', '__proto__', 'constructor', 'toString', 'op '])]: hostileValue(env, rng) };
    case 3: return { ...req, op: rng.pick([...hostileStrings(env, rng), 'Origin.add', 'origin.add ', '__proto__', 'hasOwnProperty', 'constructor'].map(String)) };
    case 4: return rng.pick([req, [req], 'origin.list', 42, null, { op: req }]);
    case 5: return keys.length > 1 ? { ...req, [key]: hostileValue(env, rng), [rng.pick(keys)]: hostileValue(env, rng) } : req;
    default: return req;
  }
}

/** Damage the line's text (never adding a newline, so it stays one line). */
function mutateText(rng: Rng, line: Buffer): Buffer {
  switch (rng.int(0, 4)) {
    case 0: return line.subarray(0, rng.int(0, line.length));
    case 1: return Buffer.concat([line.subarray(0, 1), Buffer.from([rng.pick([0xff, 0xc0, 0xed, 0xf8]), 0x80, 0xfe]), line.subarray(1)]);
    case 2: return Buffer.from(randomBytes(rng, rng.int(1, 200)).map((b) => (b === 10 ? 32 : b)));
    case 3: return Buffer.from(`{"op":"origin.add","name":"a","name":"${SENTINEL}","path":"/tmp","path":"${'['.repeat(rng.int(1, 3000))}"}`);
    default: return line;
  }
}

/** One request line (without its newline). */
export function controlLine(env: ControlFuzzEnv, rng: Rng): Buffer {
  let value: unknown = template(env, rng);
  if (rng.chance(0.85)) value = mutateRequest(env, rng, value as Record<string, unknown>);
  const text = Buffer.from(JSON.stringify(value) ?? 'undefined');
  return rng.chance(0.2) ? mutateText(rng, text) : text;
}
