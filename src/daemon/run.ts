// `nbdsnap daemon`: start, then stop cleanly on SIGTERM or SIGINT (a second signal exits at once),
// or exit once a successor took over (a live restart; see restart.ts). Started as a successor, it
// first collects what the running daemon hands over (successor.ts).
import { errorText } from '../common/error-text.ts';
import { createLogger, type Logger } from '../log.ts';
import { tuneRuntimeForNbd } from '../nbd/runtime-tuning.ts';
import type { DaemonConfig } from './config.ts';
import { Daemon } from './daemon.ts';
import type { Successor } from './restart.ts';
import { faultPoint } from './faults.ts';
import { warmUpSnapshotLoading } from './warm-up.ts';
import { awaitHandover, isSuccessor, reportReadyAwaitCommit, reportSuccessorFailure, type Inherited } from './successor.ts';

function flushLogs(log: Logger): Promise<void> {
  return new Promise((resolve) => log.flush(() => resolve()));
}

/** Run until signalled; resolves with the exit status. */
export async function runDaemon(config: DaemonConfig): Promise<number> {
  tuneRuntimeForNbd(); // before the first asynchronous fs call
  const log = createLogger({ level: config.logLevel });
  // Handlers first: READY=1 goes out from inside start(), and a SIGTERM that follows it at once
  // must mean a clean stop, not the default action (death with nothing flushed or removed).
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  let inherited: Inherited | undefined;
  if (isSuccessor()) {
    // Before 'loaded' (the old daemon pauses its clients then): see warm-up.ts.
    log.debug({ ms: Math.round(await warmUpSnapshotLoading()) }, 'live restart: snapshot loading warmed up');
    inherited = await awaitHandover();
  }
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(config, log, inherited);
  } catch (err) {
    reportSuccessorFailure(errorText(err));
    throw err;
  }
  if (inherited) {
    faultPoint('restart:successor-before-ready');
    await reportReadyAwaitCommit();
    daemon.adopt(inherited);
  }
  const exitAfterHandover = async (successor: Successor): Promise<never> => {
    // The successor serves with our sockets; our stores are closed. Exit without a shutdown,
    // which would remove the socket files: once the last control reply and socket have left.
    await daemon.controlIdle();
    if (daemon.relayed > 0) {
      // TLS connections stay here, relayed to the successor: stop everything else, then wait for
      // them to end. A signal now ends them (the successor serves everything but them).
      process.on('SIGTERM', () => process.exit(0)).on('SIGINT', () => process.exit(0));
      await daemon.keepOnlyRelays(); // nothing is accepted here from now on
      await successor.delivered();
      successor.disconnect();
      log.info({ relayed: daemon.relayed, successor: successor.pid }, 'live restart: relaying TLS connections to the successor until they end');
      await daemon.relaysEnded();
      log.info('live restart: the last relayed TLS connection ended; exiting');
    }
    await flushLogs(log);
    // Connections accepted meanwhile are forwarded; exit in the same tick as the last delivery,
    // so that none is accepted here and lost.
    await successor.delivered();
    process.exit(0);
  };
  const outcome = await Promise.race([signalled, daemon.handedOver]);
  if (typeof outcome !== 'string') return exitAfterHandover(outcome);
  const signal = outcome;
  log.info({ signal }, 'signal received');
  const again = () => {
    log.warn('second signal: exiting without a clean shutdown');
    process.exit(1);
  };
  process.once('SIGTERM', again);
  process.once('SIGINT', again);
  try {
    await daemon.stop(); // a restart in progress ends first
    if (daemon.handedOverTo) return exitAfterHandover(daemon.handedOverTo);
  } catch (err) {
    log.error({ err }, 'error during shutdown');
    await flushLogs(log);
    return 1;
  }
  await flushLogs(log);
  return 0;
}
