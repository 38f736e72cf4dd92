// The daemon at rest between cycles, for its idle memory: the plan of the embedded catalogues
// (computed only: the scheduler never starts, so nothing is probed), its metrics and status
// board with every series declared, the records writer and the HTTP server on loopback port 0.
// Run it in a namespace with nothing but `lo`. Prints JSON: RSS and heap after settling.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { get } from 'node:http';
import { Engine } from '../dist/engine/engine.js';
import { silentLogger } from '../dist/log.js';
import { loadPlan } from '../dist/plan/index.js';
import { createHttpServer } from '../dist/server/http.js';
import { Metrics } from '../dist/sinks/metrics.js';
import { RecordWriter } from '../dist/sinks/records.js';
import { StatusBoard } from '../dist/sinks/status.js';

const log = silentLogger();
const plan = loadPlan(null);
const metrics = new Metrics(plan.config.vantage.name, plan.phases);
const status = new StatusBoard();
metrics.declare(plan.specs);
status.declare(plan.specs);
const scratch = mkdtempSync(join(tmpdir(), 'callprobe-idle-'));
const recordsDir = join(scratch, 'records');
const records = new RecordWriter({ dir: recordsDir, ...plan.config.records });
const engine = new Engine(plan, log);
const server = createHttpServer({ registry: metrics.registry, status, recordsDir, current: () => ({ vantage: 'idle' }), startedAt: new Date().toISOString(), log, health: () => ({ ok: true, detail: {} }) });
server.listen(0, '127.0.0.1');
await once(server, 'listening');
// One scrape, as a Prometheus would do soon after start (node:http: fetch would load undici, which the daemon never does).
await new Promise((resolve, reject) => get(`http://127.0.0.1:${server.address().port}/metrics`, (res) => res.resume().on('end', resolve)).on('error', reject));
await new Promise((r) => setTimeout(r, 2000));
globalThis.gc?.();
await new Promise((r) => setTimeout(r, 500));
const m = process.memoryUsage();
console.log(JSON.stringify({ targets: plan.specs.length, rssMiB: m.rss / 2 ** 20, heapUsedMiB: m.heapUsed / 2 ** 20, externalMiB: m.external / 2 ** 20, engine: typeof engine }));
server.close();
await records.close();
engine.close();
rmSync(scratch, { recursive: true, force: true });
