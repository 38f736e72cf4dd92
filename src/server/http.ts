import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Registry } from 'prom-client';
import { Limiter } from '../engine/limiter.js';
import type { Logger } from '../log.js';
import { readRecords } from '../sinks/records.js';
import type { StatusBoard } from '../sinks/status.js';
import { VERSION } from '../version.js';
import { isLoopbackHost } from '../net/cidr.js';
import { banners, serviceAnswers } from '../sinks/answer.js';
import { WINDOWS } from '../sinks/history.js';
import type { ResultFilter } from '../sinks/privacy.js';
import { assets } from './assets.js';
import { renderStatusPage, type PageContext } from './page.js';
import { renderTargetPage } from './target-page.js';

export interface HttpDeps {
  registry: Registry;
  status: StatusBoard;
  recordsDir: string;
  /** What a reload may change (SIGHUP rotates the token and renames the vantage at once). */
  current(): { vantage: string; token?: string | undefined };
  startedAt: string;
  log: Logger;
  health(): { ok: boolean; detail: Record<string, unknown> };
  /** What records read back go through before they are served (the privacy filter: older records may predate it). */
  show?: ResultFilter;
}

/**
 * The pages load nothing but the daemon's own files: no inline script or style, no other origin,
 * no framing (a catalogue or evidence string can never become code on the page).
 */
const PAGE_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const MAX_RESULTS = 1000;
/**
 * /api/results scans up to 32 MiB of records each: two run at once, a few more wait their turn,
 * and beyond that a client is told to come back (503), so a burst of requests costs bounded
 * memory and leaves the event loop to the probes and /healthz.
 */
const SCANS_AT_ONCE = 2;
const SCANS_WAITING = 16;

/** /metrics, /healthz, /api/status, /api/results and the status page. */
export function createHttpServer(deps: HttpDeps): Server {
  const scans = new Limiter(SCANS_AT_ONCE);
  return createServer((req, res) => {
    handle(req, res, deps, scans).catch((err) => {
      deps.log.error({ err }, 'http handler failed');
      if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
      else res.destroy();
    });
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: HttpDeps, scans: Limiter): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://callprobe');
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n');
  // Without a token the server listens on loopback only; a page in the volunteer's browser could
  // still reach it through DNS rebinding, so only loopback Host names are served.
  const { vantage, token } = deps.current();
  if (!token && !loopbackHost(req.headers.host)) return send(res, 403, 'text/plain', 'forbidden: use http://127.0.0.1 or a token\n');
  // /healthz stays open so that a supervisor can check liveness without the token.
  if (url.pathname !== '/healthz' && token && !authorized(req, token)) {
    res.setHeader('WWW-Authenticate', 'Bearer realm="callprobe"');
    return send(res, 401, 'text/plain', 'unauthorized\n');
  }
  switch (url.pathname) {
    case '/metrics':
      return send(res, 200, deps.registry.contentType, await deps.registry.metrics());
    case '/healthz': {
      const h = deps.health();
      return json(res, h.ok ? 200 : 503, { status: h.ok ? 'ok' : 'unhealthy', version: VERSION, ...h.detail });
    }
    case '/api/status':
      return json(res, 200, { vantage, version: VERSION, startedAt: deps.startedAt, targets: deps.status.list() });
    case '/api/results': {
      const limitText = url.searchParams.get('limit') ?? '100';
      const sinceText = url.searchParams.get('since');
      const limit = Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_RESULTS) {
        return json(res, 400, { error: `limit must be an integer from 1 to ${MAX_RESULTS}` });
      }
      let since: Date | undefined;
      if (sinceText !== null) {
        since = /^\d+(\.\d+)?$/.test(sinceText) ? new Date(Number(sinceText) * 1000) : new Date(sinceText);
        if (Number.isNaN(since.getTime())) return json(res, 400, { error: 'since must be an ISO 8601 time or Unix seconds' });
      }
      if (scans.queued >= SCANS_WAITING) {
        res.setHeader('Retry-After', '5');
        return json(res, 503, { error: 'too many /api/results requests at once: retry later' });
      }
      const results = await scans.run(() => readRecords(deps.recordsDir, { limit, ...(since ? { since } : {}) }));
      return json(res, 200, deps.show ? results.map(deps.show) : results);
    }
    case '/api/summary': {
      const states = deps.status.states();
      const now = Date.now();
      const ids = (service: string, path: string): string[] =>
        deps.status.list().filter((t) => !t.control && t.service === service && t.path === path).map((t) => t.id);
      const answers = serviceAnswers(states).map((a) => ({
        ...a,
        timelines: Object.fromEntries(WINDOWS.map((w) => [w.name, deps.status.history.timeline(ids(a.service, a.path), w, now)])),
      }));
      return json(res, 200, { vantage, version: VERSION, generatedAt: new Date(now).toISOString(), banners: banners(states), answers });
    }
    case '/':
      return html(res, renderStatusPage(pageContext(deps, vantage)));
    case '/target': {
      const page = renderTargetPage(pageContext(deps, vantage), url.searchParams.get('id') ?? '');
      return page === null ? send(res, 404, 'text/plain', 'no such target\n') : html(res, page);
    }
    default: {
      const asset = url.pathname.startsWith('/assets/') ? assets().get(url.pathname) : undefined;
      if (!asset) return send(res, 404, 'text/plain', 'not found\n');
      // The path carries the content's hash: a new version is a new path, so cache it for good.
      res.writeHead(200, { 'Content-Type': asset.type, 'Cache-Control': 'public, max-age=31536000, immutable', 'X-Content-Type-Options': 'nosniff' });
      return void res.end(asset.body);
    }
  }
}

function pageContext(deps: HttpDeps, vantage: string): PageContext {
  return { vantage, version: VERSION, startedAt: deps.startedAt, board: deps.status, assets: assets().paths, now: Date.now() };
}

function html(res: ServerResponse, body: string): void {
  res.writeHead(200, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': PAGE_POLICY,
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
  });
  res.end(body);
}

function loopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return isLoopbackHost(name.replace(/^\[|\]$/g, ''));
}

function authorized(req: IncomingMessage, token: string): boolean {
  const header = req.headers.authorization ?? '';
  const given = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '');
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', JSON.stringify(body) + '\n');
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
}
