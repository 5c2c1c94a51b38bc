// User-facing CLI failures: printed as one line, never with a stack, with a distinct exit code.
export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  EXISTS: 4,
  BUSY: 5,
  DAEMON_UNREACHABLE: 6,
  INVALID: 7,
  /** An external tool (nbd-client) failed or is missing. */
  TOOL_FAILED: 8,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = ExitCode.FAILURE, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}
