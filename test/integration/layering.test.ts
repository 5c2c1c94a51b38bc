// The dependency direction of docs/style.md, as .dependency-cruiser.cjs states it: src/ obeys it
// today, and a tree that breaks each rule fails the same check (so a rule cannot silently stop
// matching, e.g. after a folder is renamed).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = path.join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
const run = promisify(execFile);

/** `depcruise --config .dependency-cruiser.cjs src` in `cwd`, as the test script runs it. */
async function depcruise(cwd: string): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(process.execPath, [DEPCRUISE, '--config', CONFIG, 'src'], { cwd });
    return { code: 0, stdout };
  } catch (err) {
    const { code, stdout } = err as { code?: unknown; stdout?: string };
    return { code: typeof code === 'number' ? code : -1, stdout: stdout ?? '' };
  }
}

/** One forbidden import per rule (file -> source); `allowed` imports must not be reported. */
const TREE: Record<string, string> = {
  'src/log.ts': 'export const log = 1;',
  'src/common/a.ts': "import { b } from './b.ts';\nexport const a = () => b;", // no-circular
  'src/common/b.ts': "import { a } from './a.ts';\nexport const b = () => a;",
  'src/block/dev.ts': "import { log } from '../log.ts';\nexport const dev = log;", // block-imports-nothing
  'src/catalog/cat.ts': "import { a } from '../common/a.ts';\nexport const cat = a;", // allowed
  'src/nbd/srv.ts': "import { store } from '../store/st.ts';\nexport const srv = store;", // nbd-only-block
  'src/nbd/wire.ts': 'export const wire = 1;',
  'src/store/st.ts': "import type { Snap } from '../targets/snap.ts';\nexport const store: Snap = 1;", // store-only-block (type-only)
  'src/targets/snap.ts': "import { wire } from '../nbd/wire.ts';\nexport type Snap = typeof wire;", // targets-only-store-block
  'src/control/api.ts': "import { run } from '../daemon/run.ts';\nexport const api = run;", // no-import-daemon, control-imports-nothing
  'src/daemon/run.ts': "import { main } from '../cli/main.ts';\nexport const run = main;", // no-import-cli (the daemon may import the rest)
  'src/cli/main.ts': "import { srv } from '../nbd/srv.ts';\nexport const main = srv;", // cli-only-control-client
  'src/cli/commands/daemon.ts': "import { run } from '../../daemon/run.ts';\nexport const d = run;", // allowed exception
};

const EXPECTED = [
  ['no-circular', 'src/common/a.ts', 'src/common/b.ts'], // reported once
  ['block-imports-nothing', 'src/block/dev.ts', 'src/log.ts'],
  ['nbd-only-block', 'src/nbd/srv.ts', 'src/store/st.ts'],
  ['store-only-block', 'src/store/st.ts', 'src/targets/snap.ts'],
  ['targets-only-store-block', 'src/targets/snap.ts', 'src/nbd/wire.ts'],
  ['no-import-daemon', 'src/control/api.ts', 'src/daemon/run.ts'],
  ['control-imports-nothing', 'src/control/api.ts', 'src/daemon/run.ts'],
  ['no-import-cli', 'src/daemon/run.ts', 'src/cli/main.ts'],
  ['cli-only-control-client', 'src/cli/main.ts', 'src/nbd/srv.ts'],
];

let tmp: string | undefined;
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('layering (dependency-cruiser)', () => {
  it('has a rule for every arrow of the style guide', () => {
    const config = createRequire(import.meta.url)(CONFIG) as { forbidden: { name: string; severity: string }[] };
    const names = config.forbidden.map((rule) => rule.name);
    expect(names).toEqual(expect.arrayContaining([
      'no-import-daemon', 'no-import-cli', 'common-imports-nothing', 'log-imports-nothing', 'block-imports-nothing',
      'catalog-imports-nothing', 'nbd-only-block', 'store-only-block', 'targets-only-store-block', 'control-imports-nothing',
      'cli-only-control-client', 'cli-serve-only-nbd-block', 'cli-daemon-only-daemon', 'no-circular',
    ]));
    expect(config.forbidden.every((rule) => rule.severity === 'error')).toBe(true);
  });

  it('src/ obeys the rules: exit 0 and a one-line summary', async () => {
    const { code, stdout } = await depcruise(ROOT);
    expect(code).toBe(0);
    expect(stdout.trim()).toMatch(/^✔ no dependency violations found \(\d+ modules, \d+ dependencies cruised\)$/);
  });

  it('fails on a tree that breaks each rule, and reports exactly those imports', async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nbdsnap-layering-'));
    for (const [file, source] of Object.entries(TREE)) {
      fs.mkdirSync(path.dirname(path.join(tmp, file)), { recursive: true });
      fs.writeFileSync(path.join(tmp, file), source + '\n');
    }
    const { code, stdout } = await depcruise(tmp);
    // "  error RULE: FROM → TO" (a cycle continues on the next lines: FROM → NEXT → ... → FROM).
    const found = [...stdout.matchAll(/^\s+error ([\w-]+): (\S+) →\s+(\S+)/gm)].map((m) => m.slice(1, 4));
    expect(found).toEqual(expect.arrayContaining(EXPECTED));
    expect(found).toHaveLength(EXPECTED.length);
    expect(code).toBe(EXPECTED.length); // depcruise exits with the number of errors
  });
});
