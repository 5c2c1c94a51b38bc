// After a control fuzz run: does the disk agree with what the daemon accepted? The catalog holds
// exactly the names created and not removed; <data-dir>/cow/ holds exactly the COW files of
// snapshots made with --size; the data dir holds nothing else of note; the test dir is as it was;
// no file named after the fuzz sentinel exists anywhere a traversal could reach.
import fs from 'node:fs';
import path from 'node:path';
import { listTree, readCatalog, strayFiles } from './fuzz-control-env.ts';
import type { ControlFuzzEnv } from './fuzz-control-gen.ts';
import { expectedNames, type Tally } from './fuzz-control-run.ts';

function same(what: string, actual: string[], expected: string[]): string[] {
  const extra = actual.filter((x) => !expected.includes(x));
  const missing = expected.filter((x) => !actual.includes(x));
  return extra.length + missing.length === 0 ? [] : [`${what}: extra ${JSON.stringify(extra)}, missing ${JSON.stringify(missing)}`];
}

/** The test dir's own files (the data dir aside), to compare before and after. */
export function ownFiles(env: ControlFuzzEnv): string[] {
  return listTree(env.dir).filter((p) => p !== 'data' && !p.startsWith('data/'));
}

/** Every disagreement found; empty when the disk matches. */
export function diskProblems(env: ControlFuzzEnv, tally: Tally, initialNames: string[], ownBefore: string[]): string[] {
  const catalog = readCatalog(env.dataDir);
  const names = [...catalog.origins, ...catalog.snapshots.map((s) => s.name)].sort();
  const cows = catalog.snapshots.filter((s) => s.cowCreated).map((s) => path.basename(s.cowPath));
  const dataEntries = fs.readdirSync(env.dataDir).filter((f) => !/^catalog\.db(-wal|-shm|-journal)?$/.test(f));
  return [
    ...same('catalog rows', names, expectedNames(initialNames, tally)),
    ...same('files in <data-dir>/cow', fs.readdirSync(path.join(env.dataDir, 'cow')), cows),
    ...same('entries in <data-dir>', dataEntries, ['control.sock', 'cow', 'daemon.lock', 'nbd.sock']),
    ...same('files in the test dir', ownFiles(env), ownBefore),
    ...same('sentinel-named files outside <data-dir>/cow', strayFiles(env), []),
  ];
}
