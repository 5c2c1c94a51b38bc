// How an error reads in one line (a log field, a reply, a CLI message).

/** The message of an Error, or anything else as a string. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
