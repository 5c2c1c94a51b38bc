// Runs nbd-client for attach/detach. The binary is `nbd-client` on PATH, or $NBDSNAP_NBD_CLIENT
// (a test hook). Its failures become one-line CliErrors with exit code TOOL_FAILED.
import { spawn } from 'node:child_process';
import { CliError, ExitCode } from './errors.ts';

export const NBD_DEVICE_PATTERN = /^\/dev\/nbd\d{1,4}$/;

export function nbdClientBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env.NBDSNAP_NBD_CLIENT || 'nbd-client';
}

/** Check an NBD device argument (/dev/nbdN) before handing it to nbd-client. */
export function checkNbdDevice(device: string): string {
  if (!NBD_DEVICE_PATTERN.test(device)) {
    throw new CliError(`not an NBD device path: ${JSON.stringify(device)} (expected /dev/nbdN)`, ExitCode.INVALID);
  }
  return device;
}

/** Run nbd-client with `args`, passing its stdout through; resolves on exit status 0. */
export function runNbdClient(args: string[]): Promise<void> {
  const binary = nbdClientBinary();
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      if (stderr.length < 64 * 1024) stderr += text;
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? `${binary} not found (install the nbd-client package)` : `cannot run ${binary}: ${err.message}`;
      reject(new CliError(why, ExitCode.TOOL_FAILED, { cause: err }));
    });
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      const lines = stderr.trim().split('\n').filter(Boolean);
      const detail = lines.length ? `: ${lines.slice(-2).join(' / ')}` : '';
      const status = signal ? `signal ${signal}` : `exit ${code}`;
      reject(new CliError(`${binary} ${args.join(' ')} failed (${status})${detail}`, ExitCode.TOOL_FAILED));
    });
  });
}
