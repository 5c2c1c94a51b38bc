// JSON-lines framing for the control socket: split a byte stream at '\n' with a cap on the line
// length, so a peer that never sends a newline cannot make us buffer without bound.
import type { Socket } from 'node:net';

export class LineTooLongError extends Error {
  constructor(max: number) {
    super(`line longer than ${max} bytes`);
    this.name = 'LineTooLongError';
  }
}

/**
 * Call onLine for every complete line read from `socket` (without the newline). When a line
 * exceeds maxBytes, onTooLong is called once and nothing more is read.
 */
export function readLines(socket: Socket, maxBytes: number, onLine: (line: string) => void, onTooLong: (err: LineTooLongError) => void): void {
  let parts: Buffer[] = [];
  let pending = 0;
  const onData = (chunk: Buffer): void => {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      if (pending + nl - start > maxBytes) return tooLong();
      parts.push(chunk.subarray(start, nl));
      const line = Buffer.concat(parts).toString('utf8');
      parts = [];
      pending = 0;
      start = nl + 1;
      onLine(line);
    }
    if (pending + chunk.length - start > maxBytes) return tooLong();
    if (start < chunk.length) {
      parts.push(chunk.subarray(start));
      pending += chunk.length - start;
    }
  };
  const tooLong = (): void => {
    socket.off('data', onData);
    parts = [];
    onTooLong(new LineTooLongError(maxBytes));
  };
  socket.on('data', onData);
}
