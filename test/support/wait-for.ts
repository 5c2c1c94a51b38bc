// Polling for state that sends no event (a file's content, another process's view of things):
// a condition and a deadline, never a fixed pause standing in for the condition.

/** Resolves once `check()` is true; looks every `everyMs`, rejects naming `what` after timeoutMs. */
export async function waitFor(check: () => boolean, what: string, timeoutMs = 30_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
