// The dependency direction of docs/style.md ("Layout"), checked by `depcruise --config
// .dependency-cruiser.cjs src`. Arrows point to what a folder may import:
//   cli -> control (client side)      daemon -> everything
//   targets -> store, block           nbd -> block
//   store -> block                    control -> (nothing but common and log)
//   catalog, block -> nothing         common -> nothing (everyone may import it)
//   metrics -> nbd, targets, store, block (their hook types and public state; only the daemon imports metrics)
// log.ts and common/ are imported by anyone who needs them (block and catalog: common only).
// Unit tests (src/**/*.test.ts) follow the rules of their folder; what they import from test/
// is not checked. Type-only imports count: a type is a dependency too.
// Each rule is a whitelist of the project folders a layer may import, so a new folder starts out
// forbidden everywhere until a rule says otherwise. test/integration/layering.test.ts proves that
// a violation fails the check.

/** The project folders and files a layer may import (its own folder is always allowed). */
function onlyImports(fromPath, allowed, comment) {
  return {
    comment,
    severity: 'error',
    from: { path: fromPath },
    to: { path: '^src/', pathNot: allowed },
  };
}

const COMMON = '^src/common/';
const LOG = '^src/log\\.ts$';

module.exports = {
  forbidden: [
    {
      name: 'no-import-daemon',
      comment: 'The daemon is the composition root: nothing imports it. Exception: the `daemon` CLI command starts it (a lazy import).',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/daemon/', '^src/cli/commands/daemon\\.ts$'] },
      to: { path: '^src/daemon/' },
    },
    {
      name: 'no-import-cli',
      comment: 'The CLI is the outermost layer: nothing outside it imports it.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      ...onlyImports('^src/common/', [COMMON],
        'common/ holds small facts every layer shares, so it imports nothing of the project.'),
      name: 'common-imports-nothing',
    },
    {
      ...onlyImports(LOG, [LOG], 'log.ts is imported by every layer, so it imports nothing of the project.'),
      name: 'log-imports-nothing',
    },
    {
      ...onlyImports('^src/block/', ['^src/block/', COMMON], 'block/ is the bottom layer: it imports only common/.'),
      name: 'block-imports-nothing',
    },
    {
      ...onlyImports('^src/catalog/', ['^src/catalog/', COMMON], 'catalog/ is a leaf (SQLite rows): it imports only common/.'),
      name: 'catalog-imports-nothing',
    },
    {
      ...onlyImports('^src/nbd/', ['^src/nbd/', '^src/block/', COMMON, LOG],
        'nbd/ serves BlockDevices: it never imports store, targets, catalog, control or daemon.'),
      name: 'nbd-only-block',
    },
    {
      ...onlyImports('^src/store/', ['^src/store/', '^src/block/', COMMON, LOG],
        'store/ keeps exceptions on a BlockDevice: it never imports nbd or targets.'),
      name: 'store-only-block',
    },
    {
      ...onlyImports('^src/targets/', ['^src/targets/', '^src/store/', '^src/block/', COMMON, LOG],
        'targets/ stack BlockDevices over stores: they never import nbd, catalog or control.'),
      name: 'targets-only-store-block',
    },
    {
      ...onlyImports('^src/control/', ['^src/control/', COMMON, LOG],
        'control/ is the wire API between CLI and daemon: the daemon supplies the handlers, so it imports no layer below.'),
      name: 'control-imports-nothing',
    },
    {
      ...onlyImports('^src/metrics/', ['^src/metrics/', '^src/nbd/', '^src/targets/', '^src/store/', '^src/block/', COMMON, LOG],
        'metrics/ observes the layers below through their hooks and public state; it never imports catalog, control or daemon (the daemon hands it what it reads).'),
      name: 'metrics-observes-below',
    },
    {
      ...onlyImports('^src/cli/', ['^src/cli/', '^src/control/(api|client|defaults|lines)\\.ts$', COMMON],
        'The CLI parses arguments and talks to the daemon through the client side of control/.'),
      name: 'cli-only-control-client',
      from: { path: '^src/cli/', pathNot: '^src/cli/commands/(serve|daemon)\\.ts$' },
    },
    {
      // Justified exception: `nbdsnap serve` is its own small composition root (one file served
      // over NBD, like `nbdkit file`), without the daemon, catalog or stores.
      ...onlyImports('^src/cli/commands/serve\\.ts$', ['^src/cli/', '^src/nbd/', '^src/block/', COMMON, LOG],
        '`nbdsnap serve` builds a linear export itself: it may use nbd/ and block/, nothing else below.'),
      name: 'cli-serve-only-nbd-block',
    },
    {
      // Justified exception: `nbdsnap daemon` starts the daemon in this process.
      ...onlyImports('^src/cli/commands/daemon\\.ts$', ['^src/cli/', '^src/daemon/', COMMON],
        '`nbdsnap daemon` loads the daemon lazily and uses nothing else below.'),
      name: 'cli-daemon-only-daemon',
    },
    {
      name: 'no-circular',
      comment: 'No import cycles inside src/.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    // Type-only imports are dependencies as well.
    tsPreCompilationDeps: true,
    // Packages and test helpers are leaves here: only src/ is checked.
    doNotFollow: { path: ['node_modules', '^test/'] },
    exclude: { path: ['node_modules'] },
  },
};
