import { once } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/log.js';
import type { ProbeResult, Verdict } from '../src/result.js';
import { assets } from '../src/server/assets.js';
import { createHttpServer } from '../src/server/http.js';
import { Metrics } from '../src/sinks/metrics.js';
import { StatusBoard } from '../src/sinks/status.js';
import { result } from '../test/helpers/results.js';
import { specFor } from '../test/helpers/spec.js';

/**
 * The status page's server time with a full week of history: 100 targets probed every 5 minutes
 * for 7 days (201,600 records, written as the daemon writes them, one file per UTC day). Measured
 * in-process over loopback HTTP: the history's load at startup, then GET / and /api/summary
 * against GET of a static asset (uPlot's 51 KB script from memory), the floor of a request here.
 */
export interface PageBench {
  targets: number;
  records: number;
  recordBytes: number;
  loadMs: number;
  /** The longest the event loop waited while the history loaded: what probes and /healthz could be held up by. */
  loadStallMs: number;
  rows: Array<{ path: string; p50Ms: number; p95Ms: number; bytes: number }>;
}

const MIN = 60_000;
const SERVICES = ['whatsapp', 'telegram', 'max', 'signal'];

export async function benchPage(opts: { targets: number; days: number; requests: number }): Promise<PageBench> {
  const dir = mkdtempSync(join(tmpdir(), 'callprobe-bench-page-'));
  try {
    const records = join(dir, 'records');
    mkdirSync(records);
    const now = Date.now();
    const specs = Array.from({ length: opts.targets }, (_, i) =>
      specFor({ endpoint: { host: '198.18.2.2', port: 1000 + i }, phases: i % 4 === 3 ? ['stun'] : ['tcp', 'tls'], service: i < 4 ? 'control' : SERVICES[i % 4]!, target: `t${i}`, control: i < 4 }),
    );
    let count = 0;
    let bytes = 0;
    // Every 5 minutes over the whole window, in one file per UTC day as the daemon writes them.
    const byDay = new Map<string, string[]>();
    for (let t = now - opts.days * 86_400_000 + 5 * MIN; t <= now; t += 5 * MIN) {
      const day = new Date(t).toISOString().slice(0, 10).replaceAll('-', '');
      const lines = byDay.get(day) ?? [];
      byDay.set(day, lines);
      for (const s of specs) {
        // A quarter of the targets blocked for the last two days, the network dead one hour a day.
        const verdict: Verdict = new Date(t).getUTCHours() === 0 ? 'error' : Number(s.target.slice(1)) % 4 === 1 && now - t < 2 * 86_400_000 ? 'blocked' : 'ok';
        const r: ProbeResult = result({ service: s.service, target: s.target, path: s.path, startedAt: new Date(t).toISOString(), verdict, failure: verdict === 'ok' ? null : 'generic_timeout_error', failedPhase: verdict === 'ok' ? null : 'tcp' });
        lines.push(JSON.stringify(r));
      }
    }
    for (const [day, lines] of byDay) {
      const text = lines.join('\n') + '\n';
      writeFileSync(join(records, `callprobe-${day}-0000.jsonl`), text);
      count += lines.length;
      bytes += Buffer.byteLength(text);
    }
    const status = new StatusBoard();
    status.declare(specs);
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const loaded = await status.load(records, (r) => r, now);
    delay.disable();
    const loadStallMs = delay.max / 1e6;
    const metrics = new Metrics('bench');
    metrics.declare(specs);
    const server = createHttpServer({
      registry: metrics.registry,
      status,
      recordsDir: records,
      current: () => ({ vantage: 'bench' }),
      startedAt: new Date(now).toISOString(),
      log: silentLogger(),
      health: () => ({ ok: true, detail: {} }),
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const rows: PageBench['rows'] = [];
    try {
      for (const path of [assets().paths.uplotJs, '/', '/api/summary', '/target?id=telegram%2Ft5']) {
        const times: number[] = [];
        let size = 0;
        for (let i = 0; i < opts.requests + 5; i++) {
          const t0 = performance.now();
          const res = await fetch(base + path);
          size = (await res.arrayBuffer()).byteLength;
          if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
          if (i >= 5) times.push(performance.now() - t0); // the first few warm the JIT up
        }
        times.sort((a, b) => a - b);
        rows.push({ path, p50Ms: times[Math.floor(times.length / 2)]!, p95Ms: times[Math.floor(times.length * 0.95)]!, bytes: size });
      }
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    return { targets: opts.targets, records: count, recordBytes: bytes, loadMs: loaded.ms, loadStallMs, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatPage(b: PageBench): string {
  const floor = b.rows[0]!;
  return [
    `history loaded from ${b.records} records (${(b.recordBytes / 2 ** 20).toFixed(0)} MiB) in ${b.loadMs} ms: ${Math.round(b.records / (b.loadMs / 1000))} records/s; the event loop waited at most ${b.loadStallMs.toFixed(1)} ms meanwhile`,
    'request                         p50 ms   p95 ms   bytes     p50 / static asset',
    ...b.rows.map((r) => `${(r.path === floor.path ? 'static asset (uPlot)' : r.path).padEnd(30)}  ${r.p50Ms.toFixed(2).padStart(7)}  ${r.p95Ms.toFixed(2).padStart(7)}  ${String(r.bytes).padStart(7)}   ${(r.p50Ms / floor.p50Ms).toFixed(1)}`),
  ].join('\n');
}
