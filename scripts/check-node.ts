// Fails early, with a clear message, when the tests would run on an unsupported Node. `npm test`
// runs it on the project's Node 24 (npm puts node_modules/.bin, which holds it, first on PATH); a
// Node too old to load a .ts file never gets here: scripts/ensure-test-tools.sh checks before this
// that the project's Node is installed.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`nbdsnap needs Node >= 22.18 (found ${process.version}); run 'npm install' to get the project's Node 24.\n`);
  process.exit(1);
}
