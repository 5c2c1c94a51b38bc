// Wait for every piece of a split request, then fail with the first error: a request is answered
// only when none of its pieces is still running (a retry must never race a failed original).
export async function allPieces(parts: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(parts);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
