// `nbdsnap daemon`: start, then stop cleanly on SIGTERM or SIGINT (a second signal exits at once).
import { createLogger, type Logger } from '../log.ts';
import { tuneRuntimeForNbd } from '../nbd/runtime-tuning.ts';
import type { DaemonConfig } from './config.ts';
import { Daemon } from './daemon.ts';

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
  const daemon = await Daemon.start(config, log);
  const signal = await signalled;
  log.info({ signal }, 'signal received');
  const again = () => {
    log.warn('second signal: exiting without a clean shutdown');
    process.exit(1);
  };
  process.once('SIGTERM', again);
  process.once('SIGINT', again);
  try {
    await daemon.stop();
  } catch (err) {
    log.error({ err }, 'error during shutdown');
    await flushLogs(log);
    return 1;
  }
  await flushLogs(log);
  return 0;
}
