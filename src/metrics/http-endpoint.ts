// The HTTP listener of --metrics: GET (or HEAD) /metrics answers the registry in Prometheus text
// format; any other path is 404 and any other method 405. A port in use fails the start with a
// message naming the address.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { errorText } from '../common/error-text.ts';
import type { Logger } from '../log.ts';

export const METRICS_PATH = '/metrics';

export interface HostPort {
  host: string;
  port: number;
}

export interface MetricsEndpoint {
  /** The bound address (port 0 resolved). */
  address: HostPort;
  close(): Promise<void>;
}

function hostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function plain(res: http.ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers });
  res.end(text);
}

async function answer(registry: Registry, req: http.IncomingMessage, res: http.ServerResponse, log: Logger): Promise<void> {
  const pathname = (req.url ?? '').split('?')[0];
  if (pathname !== METRICS_PATH) return plain(res, 404, `not found: metrics are served at ${METRICS_PATH}\n`);
  if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
  let body: string;
  try {
    body = await registry.metrics();
  } catch (err) {
    log.error({ err }, 'metrics: collecting failed');
    return plain(res, 500, `collecting metrics failed: ${errorText(err)}\n`);
  }
  res.writeHead(200, { 'Content-Type': registry.contentType });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Listen on `at` (port 0 picks a free port) and serve `registry`. */
export async function serveMetrics(registry: Registry, at: HostPort, log: Logger): Promise<MetricsEndpoint> {
  const server = http.createServer((req, res) => void answer(registry, req, res, log));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(at.port, at.host, () => (server.off('error', reject), resolve()));
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the address is already in use' : errorText(err);
    throw new Error(`metrics: cannot listen on ${hostPort(at)}: ${why}`, { cause: err });
  }
  server.on('error', (err) => log.error({ err }, 'metrics: listener error'));
  const bound = server.address() as AddressInfo;
  return {
    address: { host: bound.address, port: bound.port },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections(); // idle keep-alive scrapers would hold close() open
    }),
  };
}
