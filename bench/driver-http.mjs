// Runs inside the lab's client namespace: N GETs of a blackbox_exporter /probe URL, C at a time.
// Counts the probes the exporter reported as failed (probe_success 0). Prints JSON.
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { url: { type: 'string' }, count: { type: 'string' }, concurrency: { type: 'string' } } });
const count = Number(values.count);
let next = 0;
let failures = 0;
const worker = async () => {
  while (next < count) {
    next++;
    const body = await (await fetch(values.url)).text();
    if (!/^probe_success 1$/m.test(body)) failures++;
  }
};
const t0 = performance.now();
await Promise.all(Array.from({ length: Number(values.concurrency ?? 8) }, worker));
console.log(JSON.stringify({ probes: count, failures, wallSeconds: (performance.now() - t0) / 1000 }));
