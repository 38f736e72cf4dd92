import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { createHttpServer } from '../../src/server/http.js';
import { Metrics } from '../../src/sinks/metrics.js';
import { RecordWriter } from '../../src/sinks/records.js';
import { StatusBoard } from '../../src/sinks/status.js';
import { result } from '../helpers/results.js';
import { specFor } from '../helpers/spec.js';
import { listenTracked } from '../helpers/servers.js';

describe('HTTP API and status page', () => {
  let dir: string;
  let base: string;
  let close: () => Promise<void>;
  const token = 'a-very-long-test-token';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-http-'));
    const metrics = new Metrics('lab');
    const status = new StatusBoard();
    const specs = [
      specFor({ endpoint: { host: '198.18.2.2', port: 443 }, phases: ['tcp'], service: 'telegram', target: 'dc2' }),
      specFor({ endpoint: { host: '198.18.2.3', port: 443 }, phases: ['tcp', 'tls'], service: 'control', target: 'domestic', control: true }),
    ];
    metrics.declare(specs);
    status.declare(specs);
    const records = new RecordWriter({ dir, maxFileBytes: 1 << 20, maxTotalBytes: 1 << 24, queueLength: 10 });
    const r1 = result({ startedAt: '2026-11-22T10:00:00.000Z' });
    const r2 = result({ startedAt: '2026-11-22T10:05:00.000Z', verdict: 'blocked', failure: 'connection_reset', failedPhase: 'tcp' }, [
      { phase: 'tcp', endpoint: '198.18.2.2:443', startedAt: 0, durationMs: 3, ok: false, failure: 'connection_reset', evidence: {} },
    ]);
    for (const r of [r1, r2]) {
      records.write(r);
      metrics.observe(r);
      status.update(r);
    }
    await records.close();
    const server = createHttpServer({
      registry: metrics.registry,
      status,
      recordsDir: dir,
      current: () => ({ vantage: 'lab <vantage>', token }),
      startedAt: '2026-11-22T09:00:00.000Z',
      log: silentLogger(),
      health: () => ({ ok: true, detail: { targets: 2 } }),
    });
    const running = await listenTracked(server);
    base = `http://127.0.0.1:${running.port}`;
    close = running.close;
  });
  afterAll(async () => {
    await close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (path: string, auth = true) => fetch(base + path, { headers: auth ? { Authorization: `Bearer ${token}` } : {} });

  it('refuses everything but /healthz without the token', async () => {
    expect((await get('/metrics', false)).status).toBe(401);
    expect((await get('/api/status', false)).status).toBe(401);
    expect((await fetch(base + '/metrics', { headers: { Authorization: 'Bearer wrong' } })).status).toBe(401);
    const health = await get('/healthz', false);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', targets: 2 });
  });

  it('serves the metrics in the Prometheus text format', async () => {
    const res = await get('/metrics');
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toContain('callprobe_probe_failures_total{service="telegram",target="dc2",phase="tcp",code="connection_reset"} 1');
  });

  it('serves the latest result per target', async () => {
    const body = (await (await get('/api/status')).json()) as { vantage: string; targets: Array<{ id: string; latest: { verdict: string } | null; history: unknown[] }> };
    expect(body.vantage).toBe('lab <vantage>');
    const dc2 = body.targets.find((t) => t.id === 'telegram/dc2')!;
    expect(dc2.latest!.verdict).toBe('blocked');
    expect(dc2.history).toHaveLength(2);
    expect(body.targets.find((t) => t.id === 'control/domestic')!.latest).toBeNull();
  });

  it('serves records newest last, filtered by since and limit, and rejects bad queries', async () => {
    const all = (await (await get('/api/results')).json()) as Array<{ startedAt: string }>;
    expect(all.map((r) => r.startedAt)).toEqual(['2026-11-22T10:00:00.000Z', '2026-11-22T10:05:00.000Z']);
    const since = (await (await get('/api/results?since=2026-11-22T10:01:00Z')).json()) as unknown[];
    expect(since).toHaveLength(1);
    const unix = (await (await get(`/api/results?since=${Date.parse('2026-11-22T10:01:00Z') / 1000}`)).json()) as unknown[];
    expect(unix).toHaveLength(1);
    expect((await get('/api/results?limit=1')).status).toBe(200);
    expect((await get('/api/results?limit=0')).status).toBe(400);
    expect((await get('/api/results?since=yesterday')).status).toBe(400);
  });

  it('renders the status page with escaped text', async () => {
    const res = await get('/');
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    expect(html).toContain('callprobe · lab &#60;vantage&#62;');
    expect(html).toContain('<td>connecting fails: cut off by a reset (connection_reset)</td>');
    expect(html).not.toContain('<vantage>');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'; script-src 'self'; style-src 'self'");
    const detail = await (await get('/target?id=telegram%2Fdc2')).text();
    expect(detail).toContain('<h1>Telegram · dc2</h1>');
    expect((await get('/target?id=telegram%2Fnope')).status).toBe(404);
  });

  it('answers 404 and 405', async () => {
    expect((await get('/nope')).status).toBe(404);
    expect((await fetch(base + '/metrics', { method: 'POST', headers: { Authorization: `Bearer ${token}` } })).status).toBe(405);
  });
});

describe('HTTP without a token (loopback only)', () => {
  it('serves loopback Host names and refuses others (DNS rebinding)', async () => {
    const { request } = await import('node:http');
    const status = new StatusBoard();
    const server = createHttpServer({
      registry: new Metrics('lab').registry,
      status,
      recordsDir: '/nonexistent',
      current: () => ({ vantage: 'lab' }),
      startedAt: '2026-11-22T09:00:00.000Z',
      log: silentLogger(),
      health: () => ({ ok: true, detail: {} }),
    });
    const { port, close } = await listenTracked(server);
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/api/status', headers: { Host: host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    try {
      expect(await get(`127.0.0.1:${port}`)).toBe(200);
      expect(await get(`localhost:${port}`)).toBe(200);
      expect(await get(`[::1]:${port}`)).toBe(200);
      expect(await get('rebind.example:9465')).toBe(403);
      expect(await get('127.0.0.1.rebind.example')).toBe(403);
    } finally {
      await close();
    }
  });
});
