import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startLabCoturn } from '../test/lab/coturn.js';
import { createLab, isRoot, type Lab } from '../test/lab/index.js';

/**
 * STUN Binding transactions per CPU-second against the lab's coturn (4.6.1, server namespace),
 * measured in the same run for:
 * - callprobe: the `stun` phase through its engine (runner, guard, a connected socket per run,
 *   evidence), from compiled dist/ via bench/driver-callprobe.mjs;
 * - the `stun` npm package (nodertc/stun 2.x): `stun.request()`, a socket per request, in the same
 *   Node.js, via bench/driver-stun-npm.mjs: the like-for-like peer;
 * - coturn's `turnutils_stunclient`: one process per transaction (how it is used), CPU from the
 *   shell's `times` for its children. Process start-up dominates it, so it is a floor, not a peer.
 * Both Node drivers run 8 transactions at a time after a warm-up; every answer is checked.
 */
export interface StunBenchRow {
  tool: 'callprobe' | 'stun (npm)' | 'turnutils_stunclient';
  transactions: number;
  failures: number;
  cpuSeconds: number;
  transactionsPerCpuSecond: number;
}

const SERVER = '198.18.2.2';

export async function benchStun(lab: Lab, opts: { count: number; processCount: number; concurrency: number }): Promise<StunBenchRow[]> {
  const coturn = await startLabCoturn(lab, { ip: SERVER });
  writeFileSync(
    join(lab.tmpDir, 'stun-bench.yaml'),
    `service: bench\ntargets:\n  - { name: stun, host: ${SERVER}, port: ${coturn.port}, phaseTimeout: 45s, phases: [stun] }\n`,
  );
  const config = join(lab.tmpDir, 'stun-bench-config.yaml');
  writeFileSync(
    config,
    `embeddedCatalogues: false\ncatalogues: [stun-bench.yaml]\ndns: { resolver: "${SERVER}:53" }\nsafety: { allow: [127.0.0.0/8, "::1/128", 198.18.0.0/15] }\n`,
  );
  const rows: StunBenchRow[] = [];
  const node = async (tool: StunBenchRow['tool'], args: string[]): Promise<void> => {
    const res = await lab.run('client', process.execPath, [...args, '--count', String(opts.count), '--concurrency', String(opts.concurrency)], { timeoutMs: 600_000 });
    if (res.code !== 0) throw new Error(`${tool} driver failed: ${res.stderr}`);
    const r = JSON.parse(res.stdout.trim().split('\n').pop()!) as { probes: number; failures: number; cpuSeconds: number };
    rows.push({ tool, transactions: r.probes, failures: r.failures, cpuSeconds: r.cpuSeconds, transactionsPerCpuSecond: r.probes / r.cpuSeconds });
  };
  try {
    await node('callprobe', ['bench/driver-callprobe.mjs', '--config', config, '--spec', 'bench/stun']);
    await node('stun (npm)', ['bench/driver-stun-npm.mjs', '--server', `${SERVER}:${coturn.port}`]);
    // `times` prints the shell's own user/sys, then its children's: "0m0.123s 0m0.456s".
    const script = `fail=0; for i in $(seq ${opts.processCount}); do turnutils_stunclient -p ${coturn.port} ${SERVER} | grep -q 'UDP reflexive addr' || fail=$((fail+1)); done; echo "failures $fail"; times`;
    const res = await lab.run('client', 'bash', ['-c', script], { timeoutMs: 600_000 });
    const lines = res.stdout.trim().split('\n');
    const children = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines.at(-1) ?? '');
    if (res.code !== 0 || !children) throw new Error(`turnutils_stunclient loop failed: ${res.stderr}${res.stdout}`);
    const cpu = Number(children[1]) * 60 + Number(children[2]) + Number(children[3]) * 60 + Number(children[4]);
    const failures = Number(/failures (\d+)/.exec(res.stdout)![1]);
    rows.push({ tool: 'turnutils_stunclient', transactions: opts.processCount, failures, cpuSeconds: cpu, transactionsPerCpuSecond: opts.processCount / cpu });
  } finally {
    await coturn.stop();
  }
  return rows;
}

export function formatStunBench(rows: readonly StunBenchRow[]): string {
  const out = [
    'STUN Binding transactions per CPU-second against coturn 4.6.1 (lab, same run)',
    'tool                  transactions  failures  cpu-s   transactions/cpu-s',
    ...rows.map(
      (r) =>
        `${r.tool.padEnd(21)} ${String(r.transactions).padStart(12)}  ${String(r.failures).padStart(8)}  ${r.cpuSeconds.toFixed(2).padStart(6)}  ${r.transactionsPerCpuSecond.toFixed(0).padStart(18)}`,
    ),
  ];
  const cp = rows.find((r) => r.tool === 'callprobe');
  for (const peer of rows.filter((r) => r.tool !== 'callprobe')) {
    if (cp) out.push(`ratio callprobe/${peer.tool} transactions per CPU-second = ${(cp.transactionsPerCpuSecond / peer.transactionsPerCpuSecond).toFixed(2)}`);
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  if (!isRoot()) {
    console.error('bench/stun.ts needs root: it builds a lab of network namespaces (run it with sudo).');
    process.exit(2);
  }
  const lab = await createLab();
  try {
    const rows = await benchStun(lab, {
      count: Number(process.env.BENCH_STUN ?? 5000),
      processCount: Number(process.env.BENCH_STUN_PROCESSES ?? 300),
      concurrency: 8,
    });
    console.log(formatStunBench(rows));
  } finally {
    await lab.destroy();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
