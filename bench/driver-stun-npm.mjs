// Runs inside the lab's client namespace: N STUN Binding transactions with the `stun` npm package
// (nodertc/stun 2.x), C at a time, each with its own socket as stun.request() makes by default:
// the peer of callprobe's `stun` phase in bench/stun.ts. Prints the same JSON as driver-callprobe.mjs.
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const stun = require('stun');
const { values } = parseArgs({ options: { server: { type: 'string' }, count: { type: 'string' }, concurrency: { type: 'string' }, warmup: { type: 'string' } } });

const runMany = async (n, concurrency) => {
  let failures = 0;
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      try {
        const res = await stun.request(values.server, { timeout: 500, retries: 6 });
        if (!res.getXorAddress()) failures++;
      } catch {
        failures++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return failures;
};
const concurrency = Number(values.concurrency ?? 8);
await runMany(Number(values.warmup ?? 50), concurrency);
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const count = Number(values.count);
const failures = await runMany(count, concurrency);
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({
  probes: count,
  failures,
  cpuSeconds: (cpu.user + cpu.system) / 1e6,
  wallSeconds: (performance.now() - t0) / 1000,
  maxRssKiB: process.resourceUsage().maxRSS,
}));
