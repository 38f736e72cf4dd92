// Runs inside the lab's client namespace: N bare TLS handshakes with Node's own tls.connect to the
// same lab target callprobe probes, C at a time, the secure context built once as callprobe does.
// This is the floor Node allows: no engine, no evidence, no guard. Prints JSON like the other drivers.
import { readFileSync } from 'node:fs';
import { connect, createSecureContext, rootCertificates } from 'node:tls';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { host: { type: 'string' }, port: { type: 'string' }, servername: { type: 'string' }, ca: { type: 'string' }, count: { type: 'string' }, concurrency: { type: 'string' }, warmup: { type: 'string' } } });
const secureContext = createSecureContext({ ca: [...rootCertificates, readFileSync(values.ca, 'utf8')] });
const handshake = () =>
  new Promise((resolve) => {
    const socket = connect({ host: values.host, port: Number(values.port), servername: values.servername, secureContext });
    socket.once('secureConnect', () => {
      resolve(socket.authorized);
      socket.destroy();
    });
    socket.once('error', () => resolve(false));
  });
const runMany = async (n) => {
  let next = 0;
  let failures = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      if (!(await handshake())) failures++;
    }
  };
  await Promise.all(Array.from({ length: Number(values.concurrency ?? 8) }, worker));
  return failures;
};
await runMany(Number(values.warmup ?? 50));
const cpu0 = process.cpuUsage();
const count = Number(values.count);
const failures = await runMany(count);
const cpu = process.cpuUsage(cpu0);
console.log(JSON.stringify({ probes: count, failures, cpuSeconds: (cpu.user + cpu.system) / 1e6, maxRssKiB: process.resourceUsage().maxRSS }));
