// The daemon's start count, kept across restarts in <data-dir>/daemon-starts (one decimal number),
// so that nbdsnap_daemon_starts_total is a counter that never resets and restarts are its
// increase. The data dir is locked by this daemon, so nobody else writes the file. A count that
// cannot be read or written is logged and never stops the daemon.
import fs from 'node:fs';
import path from 'node:path';
import { errorText } from '../common/error-text.ts';
import type { Logger } from '../log.ts';

export const STARTS_FILE = 'daemon-starts';

function readCount(file: string, log: Logger): number {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`metrics: cannot read ${file}: ${errorText(err)}; counting starts from 0`);
    return 0;
  }
  if (/^\d{1,15}\n?$/.test(text)) return Number(text.trim());
  log.warn(`metrics: ${file} does not hold a count; counting starts from 0`);
  return 0;
}

/** Count this start and return the total, this start included. */
export function countStart(dataDir: string, log: Logger): number {
  const file = path.join(dataDir, STARTS_FILE);
  const total = readCount(file, log) + 1;
  const tmp = `${file}.tmp`;
  try {
    fs.writeFileSync(tmp, `${total}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file); // a crash leaves the old count or the new one, never a torn file
  } catch (err) {
    log.warn(`metrics: cannot write ${file}: ${errorText(err)}`);
  }
  return total;
}
