// Fails early, with a clear message, when the tests would run on an unsupported Node.
const major = Number(process.versions.node.split('.')[0]);
if (major < 22) {
  process.stderr.write(`nbdsnap needs Node >= 22 (found ${process.version}); run 'npm install' to get the project's Node 24.\n`);
  process.exit(1);
}
