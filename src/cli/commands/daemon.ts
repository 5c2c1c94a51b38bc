// nbdsnap daemon: run the daemon in the foreground (one process serves every origin and snapshot).
import type { Command } from 'commander';
import { errorText } from '../../common/error-text.ts';
import { CliError, ExitCode } from '../errors.ts';
import { TLS_CONFIG_HELP, TLS_HELP, addTlsOptions, type TlsFlags } from '../tls-options.ts';

interface DaemonFlags extends TlsFlags {
  dataDir?: string;
  socket?: string;
  control?: string;
  listen?: string;
  metrics?: string;
  logLevel?: string;
  config?: string;
  autoextendThreshold?: string;
  autoextendPercent?: string;
}

const HELP = `
Defaults (no root or config file needed):
  data dir        $NBDSNAP_DATA_DIR, else /var/lib/nbdsnap for root, else $XDG_STATE_HOME/nbdsnap
                  or ~/.local/state/nbdsnap; holds catalog.db, cow/ (COW files made by --size)
                  and daemon.lock (one daemon per data dir: a second one exits with status 5)
  NBD socket      <data-dir>/nbd.sock        ($NBDSNAP_SOCKET)
  control socket  <data-dir>/control.sock    ($NBDSNAP_CONTROL), mode 0600
  TCP             off; --listen PORT binds 127.0.0.1 ($NBDSNAP_LISTEN). TLS: see below.
  metrics         off; --metrics PORT serves Prometheus metrics at http://127.0.0.1:PORT/metrics
                  ($NBDSNAP_METRICS; see docs/metrics.md)
  log level       info ($NBDSNAP_LOG_LEVEL); JSON lines on stderr, human-readable on a TTY
  auto-extend     off: threshold 100, percent 20 ($NBDSNAP_AUTOEXTEND_THRESHOLD/_PERCENT), as LVM's
                  snapshot_autoextend_threshold/percent; applies to COW files made by --size whose
                  snapshot create gave no --autoextend-* of its own
Precedence: defaults < config file (--config or $NBDSNAP_CONFIG; JSON with keys dataDir,
socket, control, listen, metrics, logLevel, autoextendThreshold, autoextendPercent; paths relative to
the file) < environment < flags.
Stops cleanly on SIGTERM/SIGINT. Under systemd (NOTIFY_SOCKET set) it reports READY=1 through
systemd-notify once every export is served.
Test hook: NBDSNAP_FAULT=<step>[@N] makes the daemon SIGKILL itself at (the Nth hit of) that step of a create/remove/merge
(see src/daemon/faults.ts), NBDSNAP_MERGE_BATCH_BYTES=<n> makes merges copy n bytes per batch, and
NBDSNAP_MERGE_HOLD=<file> makes a merge wait after each batch while that file exists
(slow merges to watch); never set them in production.`;

export function register(program: Command): void {
  addTlsOptions(program.command('daemon'))
    .description('run the nbdsnap daemon in the foreground')
    .option('--data-dir <dir>', 'data directory (catalog, COW files, default sockets)')
    .option('--socket <path>', 'NBD Unix socket (every export is served here by name)')
    .option('--control <path>', 'control socket for the CLI')
    .option('--listen <host:port>', 'also serve NBD over TCP (PORT alone binds 127.0.0.1)')
    .option('--metrics <host:port>', 'serve Prometheus metrics at /metrics over HTTP (PORT alone binds 127.0.0.1)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .option('--config <file>', 'JSON config file')
    .option('--autoextend-threshold <pct>', 'default Data% at which a COW file the daemon created grows (1-100; 100 = off)')
    .option('--autoextend-percent <pct>', 'default growth, in percent of the COW size')
    .addHelpText('after', HELP + TLS_HELP + TLS_CONFIG_HELP)
    .action(async (flags: DaemonFlags) => {
      // Loaded lazily so client commands do not load the catalog, stores and NBD server.
      const { resolveConfig, ConfigError } = await import('../../daemon/config.ts');
      const { runDaemon } = await import('../../daemon/run.ts');
      const { SocketInUseError } = await import('../../common/unix-socket.ts');
      const { DataDirLockedError } = await import('../../daemon/data-dir-lock.ts');
      const { reportSuccessorFailure } = await import('../../daemon/successor.ts');
      let config;
      try {
        config = resolveConfig(flags);
      } catch (err) {
        reportSuccessorFailure(errorText(err)); // a live restart with a broken config: the old daemon goes on
        if (err instanceof ConfigError) throw new CliError(err.message, ExitCode.INVALID);
        throw err;
      }
      try {
        process.exitCode = await runDaemon(config);
      } catch (err) {
        if (err instanceof SocketInUseError || err instanceof DataDirLockedError) throw new CliError(err.message, ExitCode.BUSY);
        // One line for the admin (the log has the details): a bad catalog, an unwritable data dir...
        throw new CliError(`cannot start the daemon: ${errorText(err)}`, ExitCode.FAILURE, { cause: err });
      }
    });
}
