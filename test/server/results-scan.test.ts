import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { createHttpServer } from '../../src/server/http.js';
import { Metrics } from '../../src/sinks/metrics.js';
import { readRecords } from '../../src/sinks/records.js';
import { StatusBoard } from '../../src/sinks/status.js';
import { result } from '../helpers/results.js';
import { listenTracked } from '../helpers/servers.js';

const MiB = 1024 * 1024;

/**
 * Two 16.5 MiB records files of today, all results from long ago: `since=<now>` matches none of
 * them, so every request scans as much as it may (32 MiB). The oldest line and the newest line
 * are the ones a test looks for.
 */
function writeRecordsDir(dir: string): { line: number; perFile: number } {
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '');
  const old = (target: string) => JSON.stringify(result({ target, startedAt: '2001-01-01T00:00:00.000Z' })) + '\n';
  const line = Buffer.byteLength(old('filler-0000'));
  const perFile = Math.ceil((16.5 * MiB) / line);
  for (const seq of [0, 1]) {
    const lines = Array.from({ length: perFile }, (_, i) => old(`filler-${String(i % 10_000).padStart(4, '0')}`));
    if (seq === 0) lines[0] = old('oldest-line'); // 33 MiB from the end: beyond the scan
    if (seq === 1) lines[perFile - 1] = old('newest-line');
    writeFileSync(join(dir, `callprobe-${day}-000${seq}.jsonl`), lines.join(''));
  }
  return { line, perFile };
}

describe('/api/results reads records without stalling the daemon', () => {
  let dir: string;
  let base: string;
  let close: () => Promise<void>;
  let layout: { line: number; perFile: number };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-scan-'));
    layout = writeRecordsDir(dir);
    const server = createHttpServer({
      registry: new Metrics('lab').registry,
      status: new StatusBoard(),
      recordsDir: dir,
      current: () => ({ vantage: 'lab' }),
      startedAt: '2026-11-22T09:00:00.000Z',
      log: silentLogger(),
      health: () => ({ ok: true, detail: {} }),
    });
    const running = await listenTracked(server);
    base = `http://127.0.0.1:${running.port}`;
    close = running.close;
  });
  afterAll(async () => {
    await close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('scans at most 32 MiB, newest first: the newest line is found, the oldest is beyond the scan', async () => {
    expect((await readRecords(dir, { limit: 1 })).map((r) => r.target)).toEqual(['newest-line']);
    // The newest file whole, then the whole lines of the older one that fit in the rest of 32 MiB.
    const all = await readRecords(dir, { limit: 1_000_000 });
    expect(all).toHaveLength(layout.perFile + Math.floor((32 * MiB - layout.perFile * layout.line) / layout.line));
    expect(all.at(-1)!.target).toBe('newest-line');
    expect(all.some((r) => r.target === 'oldest-line')).toBe(false);
    const wider = await readRecords(dir, { limit: 1_000_000, maxScanBytes: 34 * MiB });
    expect(wider).toHaveLength(2 * layout.perFile);
    expect(wider[0]!.target).toBe('oldest-line');
  });

  it('/healthz answers within 50 ms while 10 requests each scan 32 MiB', async () => {
    const since = Math.floor(Date.now() / 1000);
    let running = true;
    const scans = Promise.all(
      Array.from({ length: 10 }, async () => {
        const res = await fetch(`${base}/api/results?since=${since}&limit=1000`);
        return { status: res.status, body: await res.json() };
      }),
    ).finally(() => (running = false));
    const latencies: number[] = [];
    while (running) {
      const started = performance.now();
      const res = await fetch(`${base}/healthz`);
      await res.json();
      latencies.push(performance.now() - started);
      expect(res.status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const answers = await scans;
    expect(answers).toEqual(Array.from({ length: 10 }, () => ({ status: 200, body: [] })));
    // The scans took long enough for many health checks, and none waited behind a scan.
    expect(latencies.length).toBeGreaterThanOrEqual(20);
    expect(Math.max(...latencies), `slowest of ${latencies.length} health checks`).toBeLessThan(50);
  }, 60_000);

  it('runs two scans at once and queues 16 more: beyond that a request gets 503 with Retry-After', async () => {
    const since = Math.floor(Date.now() / 1000);
    const answers = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const res = await fetch(`${base}/api/results?since=${since}`);
        return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() };
      }),
    );
    const refused = answers.filter((a) => a.status === 503);
    expect(answers.filter((a) => a.status === 200)).toHaveLength(18);
    expect(refused).toHaveLength(12);
    expect(refused[0]).toEqual({ status: 503, retryAfter: '5', body: { error: 'too many /api/results requests at once: retry later' } });
  }, 60_000);
});
