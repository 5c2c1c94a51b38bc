// Test hook: with NBDSNAP_MERGE_HOLD=<file> in its environment, a merge waits after each committed
// batch for as long as that file exists. A test creates the file before it starts a merge, does
// what must happen while the merge runs (the merge is certain to be running: one batch merged, the
// rest not), then removes the file and the merge goes on. No timing assumption about how fast a
// merge runs on the machine. Unset in production.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const HOLD_FILE = process.env.NBDSNAP_MERGE_HOLD;
/** How often the file is looked at while held. */
const POLL_MS = 20;

/** Resolves once the hold file is absent (at once when no hold is configured). */
export async function mergeHold(): Promise<void> {
  if (!HOLD_FILE) return;
  while (fs.existsSync(HOLD_FILE)) await sleep(POLL_MS, undefined, { ref: false }); // unref: never keeps a stopped daemon alive
}
