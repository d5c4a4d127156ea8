/**
 * metrics/server — the HTTP side of the endpoint: GET (or HEAD) /metrics
 * (and /, as drbd-reactor answers any path) returns the exposition text with
 * Prometheus' text content type; anything else is 404/405. Scrapes that
 * arrive while one is being collected share it (one round of control-socket
 * calls at a time, however many scrapers), and connections are bounded.
 * Binds only the address it is given — metrics/listen-address decides which
 * addresses are allowed. Knows nothing of DRBD.
 */
import http from 'node:http';
import { UdrbdError, ExitCode } from '../util/errors.js';
import { type ListenAddress, formatListenAddress } from './listen-address.js';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
/** Concurrent HTTP connections accepted; Prometheus keeps one per target. */
export const CONNECTIONS_MAX = 32;
/** A request's headers must arrive within this (slowloris). */
const HEADERS_TIMEOUT_MS = 10_000;

export interface MetricsServerOptions {
  address: ListenAddress;
  /** Builds the exposition text; called at most once at a time. */
  scrape: () => Promise<string>;
  /** Told when a scrape failed (the scraper gets a 500). */
  onError?: (err: Error) => void;
}

export class MetricsServer {
  private readonly server: http.Server;
  private running: Promise<string> | null = null;

  constructor(private readonly options: MetricsServerOptions) {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.maxConnections = CONNECTIONS_MAX;
    this.server.headersTimeout = HEADERS_TIMEOUT_MS;
    this.server.requestTimeout = HEADERS_TIMEOUT_MS * 3;
  }

  /** Listens; rejects with an operator message (address in use, not on this host). */
  listen(): Promise<void> {
    const { host, port } = this.options.address;
    const where = formatListenAddress(this.options.address);
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        this.server.off('listening', onListening);
        const why =
          err.code === 'EADDRINUSE'
            ? `address already in use (is drbd-reactor's prometheus plugin or another 'udrbdadm metrics' running? pick another port with --listen)`
            : err.code === 'EADDRNOTAVAIL'
              ? `IP ${host} not found on this host`
              : err.message;
        reject(new UdrbdError(`udrbdadm metrics: cannot listen on ${where}: ${why}`, ExitCode.configInvalid));
      };
      const onListening = (): void => {
        this.server.off('error', onError);
        resolve();
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen({ host, port, exclusive: true });
    });
  }

  /** The bound port (useful with port 0 in tests). */
  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? a.port : this.options.address.port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** One scrape at a time: later callers wait for the running one. */
  private scrapeShared(): Promise<string> {
    if (this.running !== null) return this.running;
    const run = this.options.scrape().finally(() => {
      if (this.running === run) this.running = null;
    });
    this.running = run;
    return run;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' && path !== '/') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'Content-Type': 'text/plain; charset=utf-8', Allow: 'GET, HEAD' }).end('only GET and HEAD\n');
      return;
    }
    this.scrapeShared().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: Error) => {
        this.options.onError?.(err);
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`scrape failed: ${err.message}\n`);
      },
    );
  }
}
