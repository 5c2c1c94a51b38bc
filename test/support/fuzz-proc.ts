// Process health for the fuzz campaigns: alive (signal 0), resident memory and idleness from /proc.
import fs from 'node:fs';

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const state = /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return state?.[1] !== 'Z';
}

/** Resident set size of `pid` in MiB (VmRSS). */
export function rssMiB(pid: number): number {
  const kib = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!kib) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kib[1]) / 1024;
}

/** Number of open file descriptors of `pid`. */
export function openFds(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** Each thread of `pid`: its state letter (R, S, D...) and how many times it has been switched out, as one string. */
function threadStates(pid: number): Map<string, string> {
  const threads = new Map<string, string>();
  if (!isAlive(pid)) throw new Error(`process ${pid} is gone`);
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let status: string;
    try {
      status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    } catch {
      status = ''; // the thread exited: the process is not idle
    }
    const state = /^State:\s+(\S)/m.exec(status)?.[1] ?? '?';
    const switches = [/^voluntary_ctxt_switches:\s+(\d+)/m, /^nonvoluntary_ctxt_switches:\s+(\d+)/m].map((re) => re.exec(status)?.[1]);
    threads.set(tid, `${state} ${switches.join(' ')}`);
  }
  return threads;
}

const asleep = (threads: Map<string, string>): boolean => [...threads.values()].every((t) => t.startsWith('S '));

/**
 * Resolves once `pid` has done all it can without being sent something: every thread asleep (S)
 * in two looks, and none of them switched in between (a thread that runs and sleeps again is
 * switched out once more). Nothing inside the process can wake it then, only a client, a signal
 * or a timer. Load only makes it take longer; rejects if the process is never idle in timeoutMs.
 * `meanwhile` runs at every look: what must hold all along (throw to stop waiting at once, before
 * a runaway process has eaten the machine's memory).
 */
export async function untilIdle(pid: number, meanwhile: () => void = () => {}, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let before = threadStates(pid);
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 10)); // how often to look, not how long to wait
    meanwhile();
    const now = threadStates(pid);
    if (asleep(before) && asleep(now) && [...now].every(([tid, t]) => before.get(tid) === t) && now.size === before.size) return;
    if (Date.now() > deadline) throw new Error(`process ${pid} was never idle in ${timeoutMs} ms`);
    before = now;
  }
}
