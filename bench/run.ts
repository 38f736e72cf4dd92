import { createLab, isRoot } from '../test/lab/index.js';
import { benchPage, formatPage } from './page.js';
import { benchPacing, formatPacing } from './pacing.js';
import { DEPLOYED_ENV, DEPLOYED_NODE_OPTIONS, benchIdle, benchProbes } from './probes.js';
import { benchStun, formatStunBench } from './stun.js';

/**
 * `npm run bench`: speed and memory as ratios against a peer measured in the same run, on lab
 * targets only (network namespaces on 198.18.0.0/15; needs root). Absolute numbers vary with the
 * machine; the ratios are what to compare across runs.
 */
async function main(): Promise<void> {
  if (!isRoot()) {
    console.error('npm run bench needs root: it builds a lab of network namespaces (run it with sudo).');
    process.exit(2);
  }
  const lab = await createLab();
  try {
    const idle: { blackboxRssMiB?: number } = {};
    const rows = await benchProbes(lab, { tcpCount: Number(process.env.BENCH_TCP ?? 3000), tlsCount: Number(process.env.BENCH_TLS ?? 1000), concurrency: 8 }, idle);
    const settings = process.env.BENCH_NODE_DEFAULTS === '1' ? "Node's defaults" : `as installed: NODE_OPTIONS=${DEPLOYED_NODE_OPTIONS} ${Object.entries(DEPLOYED_ENV).map(([k, v]) => `${k}=${v}`).join(' ')}`;
    console.log(`\nTCP-connect and TLS-handshake probes (lab, same targets, concurrency 8; callprobe ${settings})`);
    console.log('kind  tool               probes  failures  cpu-s    probes/cpu-s  peak RSS MiB');
    for (const r of rows) {
      console.log(
        `${r.kind.padEnd(5)} ${r.tool.padEnd(18)} ${String(r.probes).padStart(6)}  ${String(r.failures).padStart(8)}  ${r.cpuSeconds.toFixed(2).padStart(6)}  ${r.probesPerCpuSecond.toFixed(0).padStart(12)}  ${r.peakRssMiB.toFixed(1).padStart(12)}`,
      );
    }
    for (const kind of ['tcp', 'tls'] as const) {
      const cp = rows.find((r) => r.kind === kind && r.tool === 'callprobe')!;
      const bb = rows.find((r) => r.kind === kind && r.tool === 'blackbox_exporter')!;
      console.log(
        `ratio ${kind}: callprobe/blackbox_exporter probes per CPU-second = ${(cp.probesPerCpuSecond / bb.probesPerCpuSecond).toFixed(2)}, peak RSS = ${(cp.peakRssMiB / bb.peakRssMiB).toFixed(2)}`,
      );
      const floor = rows.find((r) => r.kind === kind && r.tool === 'node tls.connect');
      if (floor) {
        console.log(
          `floor ${kind}: bare tls.connect/blackbox_exporter = ${(floor.probesPerCpuSecond / bb.probesPerCpuSecond).toFixed(2)}; callprobe/bare tls.connect = ${(cp.probesPerCpuSecond / floor.probesPerCpuSecond).toFixed(2)}`,
        );
      }
    }
    const rest = await benchIdle(lab);
    console.log(`\nIdle RSS (the daemon at rest with the embedded catalogue planned, ${rest.targets} targets, nothing probed; lab namespace without a route out)`);
    console.log(`callprobe as installed ${rest.callprobeRssMiB.toFixed(1)} MiB, with Node's defaults ${rest.callprobeDefaultsRssMiB.toFixed(1)} MiB, bare node ${rest.bareNodeRssMiB.toFixed(1)} MiB, blackbox_exporter ${idle.blackboxRssMiB?.toFixed(1)} MiB`);
    console.log(`ratio idle RSS: callprobe/blackbox_exporter = ${(rest.callprobeRssMiB / idle.blackboxRssMiB!).toFixed(2)}; callprobe above bare node = ${(rest.callprobeRssMiB - rest.bareNodeRssMiB).toFixed(1)} MiB`);
    console.log('\nSTUN Binding transactions against the lab coturn');
    console.log(formatStunBench(await benchStun(lab, { count: Number(process.env.BENCH_STUN ?? 3000), processCount: 200, concurrency: 8 })));
  } finally {
    await lab.destroy();
  }
  console.log('\nMedia sender pacing (50 packets/s, 20 concurrent streams, loopback)');
  console.log(formatPacing(await benchPacing({ streams: 20, pps: 50, seconds: Number(process.env.BENCH_PACING_S ?? 10) })));
  console.log('\nStatus page server time: 100 targets, 7 days of records every 5 minutes (in-process, loopback HTTP, sequential requests)');
  console.log(formatPage(await benchPage({ targets: 100, days: 7, requests: Number(process.env.BENCH_PAGE_REQUESTS ?? 200) })));
}

await main();
