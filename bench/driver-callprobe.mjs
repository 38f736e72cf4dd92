// Runs inside the lab's client namespace: N probes of one planned target through callprobe's own
// engine (compiled dist/, so no TypeScript loader inflates the numbers), C at a time. Prints JSON.
import { parseArgs } from 'node:util';
import { SafetyGuard } from '../dist/engine/guard.js';
import { Limiter } from '../dist/engine/limiter.js';
import { runSpec } from '../dist/engine/runner.js';
import { silentLogger } from '../dist/log.js';
import { loadPlan } from '../dist/plan/index.js';

const { values } = parseArgs({ options: { config: { type: 'string' }, spec: { type: 'string' }, count: { type: 'string' }, concurrency: { type: 'string' }, warmup: { type: 'string' } } });
const plan = loadPlan(values.config);
const spec = plan.specs.find((s) => s.id === values.spec);
if (!spec) throw new Error(`no spec ${values.spec}`);
const deps = { phases: plan.phases, guard: new SafetyGuard(plan.safety), settings: plan.settings, vantage: { name: 'bench' }, log: silentLogger() };
const limiter = new Limiter(Number(values.concurrency ?? 8));
const runMany = async (n) => {
  let failures = 0;
  await Promise.all(Array.from({ length: n }, () => limiter.run(async () => {
    const r = await runSpec(spec, deps, new AbortController().signal);
    if (r.failure !== null) failures++;
  })));
  return failures;
};
await runMany(Number(values.warmup ?? 50));
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const count = Number(values.count);
const failures = await runMany(count);
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({
  probes: count,
  failures,
  cpuSeconds: (cpu.user + cpu.system) / 1e6,
  wallSeconds: (performance.now() - t0) / 1000,
  maxRssKiB: process.resourceUsage().maxRSS,
}));
