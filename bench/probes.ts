import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLabCa, startEchoServer, type Lab } from '../test/lab/index.js';

/**
 * TCP-connect and TLS-handshake probes per CPU-second, and peak RSS: callprobe's engine versus
 * prometheus-blackbox-exporter (Debian's package), probing the same lab targets in the same run.
 *
 * Both run in the client namespace and probe the server namespace through the censor (which has
 * no rules). callprobe's CPU is its driver process's own (engine in-process); the exporter's is
 * read from /proc/PID/stat, so it includes its HTTP handling, which is how it is always used.
 */
export interface ProbeBenchRow {
  kind: 'tcp' | 'tls';
  tool: 'callprobe' | 'blackbox_exporter' | 'node tls.connect';
  probes: number;
  failures: number;
  cpuSeconds: number;
  probesPerCpuSecond: number;
  peakRssMiB: number;
}

const CLK_TCK = 100; // USER_HZ on Linux (sysconf(_SC_CLK_TCK)), the unit of /proc/PID/stat times

/**
 * How the daemon runs when installed (config/systemd/callprobe.service, the Dockerfile, README
 * "Operating it"): a 1 MiB young-generation semi-space and two malloc arenas. Measured with the
 * idle driver, they take about 20 MiB off the idle RSS; the probe rows show what they cost in CPU.
 */
export const DEPLOYED_NODE_OPTIONS = '--max-old-space-size=128 --max-semi-space-size=1';
export const DEPLOYED_ENV = { MALLOC_ARENA_MAX: '2' } as const;

/** The environment a callprobe driver runs with: as installed, or Node's defaults with BENCH_NODE_DEFAULTS=1. */
export function callprobeEnv(defaults = process.env.BENCH_NODE_DEFAULTS === '1'): NodeJS.ProcessEnv {
  return defaults ? process.env : { ...process.env, ...DEPLOYED_ENV, NODE_OPTIONS: DEPLOYED_NODE_OPTIONS };
}

/** Idle memory: the daemon at rest (bench/driver-idle.mjs, embedded catalogue planned, nothing probed) beside the exporter's. */
export interface IdleRss {
  callprobeRssMiB: number;
  callprobeDefaultsRssMiB: number;
  blackboxRssMiB: number;
  bareNodeRssMiB: number;
  targets: number;
}

/** The daemon's idle RSS, as installed and with Node's defaults, and a bare Node's, in the lab's client namespace (no route out). */
export async function benchIdle(lab: Lab): Promise<Omit<IdleRss, 'blackboxRssMiB'>> {
  const sample = async (env: NodeJS.ProcessEnv): Promise<{ rssMiB: number; targets: number }> => {
    const runs: Array<{ rssMiB: number; targets: number }> = [];
    for (let i = 0; i < 3; i++) {
      const r = await lab.run('client', process.execPath, ['bench/driver-idle.mjs'], { timeoutMs: 60_000, env });
      if (r.code !== 0) throw new Error(`idle driver failed: ${r.stderr}`);
      runs.push(JSON.parse(r.stdout.trim().split('\n')[0]!) as { rssMiB: number; targets: number });
    }
    // The median of three: one run can land on a GC or a page-cache hiccup.
    return runs.sort((a, b) => a.rssMiB - b.rssMiB)[1]!;
  };
  const deployed = await sample(callprobeEnv(false));
  const defaults = await sample(callprobeEnv(true));
  const bare = await lab.run('client', process.execPath, ['-e', 'setTimeout(() => console.log(process.memoryUsage().rss / 2 ** 20), 500)'], { timeoutMs: 30_000 });
  return { callprobeRssMiB: deployed.rssMiB, callprobeDefaultsRssMiB: defaults.rssMiB, bareNodeRssMiB: Number(bare.stdout.trim()), targets: deployed.targets };
}

export async function benchProbes(
  lab: Lab,
  opts: { tcpCount: number; tlsCount: number; concurrency: number },
  idle: { blackboxRssMiB?: number } = {},
): Promise<ProbeBenchRow[]> {
  const ca = await createLabCa(join(lab.tmpDir, 'bench-ca'));
  const cert = await ca.issue(['tls.lab.test'], { ips: ['198.18.2.2'] });
  writeFileSync(join(lab.tmpDir, 'ca.pem'), ca.caCertPem);
  await startEchoServer(lab, {
    listeners: [
      { kind: 'tcp', port: 7000 },
      { kind: 'tls', port: 8443, cert: cert.certPath, key: cert.keyPath },
    ],
  });
  writeFileSync(
    join(lab.tmpDir, 'bench.yaml'),
    `service: bench
targets:
  - name: tcp
    host: 198.18.2.2
    port: 7000
    phases: [tcp]
  - name: tls
    host: 198.18.2.2
    port: 8443
    sni: tls.lab.test
    phases: [tcp, tls]
`,
  );
  const config = join(lab.tmpDir, 'callprobe.yaml');
  writeFileSync(
    config,
    `embeddedCatalogues: false
catalogues: [bench.yaml]
dns: { resolver: "198.18.2.2:53" }
tls: { extraCa: [ca.pem] }
safety: { allow: [127.0.0.0/8, "::1/128", 198.18.0.0/15] }
`,
  );
  writeFileSync(
    join(lab.tmpDir, 'blackbox.yml'),
    `modules:
  tcp:
    prober: tcp
    timeout: 5s
  tls:
    prober: tcp
    timeout: 5s
    tcp:
      tls: true
      tls_config:
        ca_file: ${join(lab.tmpDir, 'ca.pem')}
        server_name: tls.lab.test
`,
  );
  const exporter = lab.spawn('client', 'prometheus-blackbox-exporter', [
    `--config.file=${join(lab.tmpDir, 'blackbox.yml')}`,
    '--web.listen-address=127.0.0.1:9115',
    '--log.level=error',
  ]);
  await lab.waitForPort('client', '127.0.0.1', 9115, 'tcp', 15_000);
  await lab.run('client', process.execPath, ['bench/driver-http.mjs', '--url', 'http://127.0.0.1:9115/metrics', '--count', '1', '--concurrency', '1'], { timeoutMs: 30_000 });
  idle.blackboxRssMiB = rssKiBOf(exporter.pid) / 1024;

  const rows: ProbeBenchRow[] = [];
  for (const kind of ['tcp', 'tls'] as const) {
    const count = kind === 'tcp' ? opts.tcpCount : opts.tlsCount;
    const cp = await lab.run(
      'client',
      process.execPath,
      ['bench/driver-callprobe.mjs', '--config', config, '--spec', `bench/${kind}`, '--count', String(count), '--concurrency', String(opts.concurrency)],
      { timeoutMs: 600_000, env: callprobeEnv() },
    );
    if (cp.code !== 0) throw new Error(`callprobe driver failed: ${cp.stderr}`);
    const c = JSON.parse(cp.stdout.trim().split('\n').pop()!) as { probes: number; failures: number; cpuSeconds: number; maxRssKiB: number };
    rows.push({ kind, tool: 'callprobe', probes: c.probes, failures: c.failures, cpuSeconds: c.cpuSeconds, probesPerCpuSecond: c.probes / c.cpuSeconds, peakRssMiB: c.maxRssKiB / 1024 });

    const url = `http://127.0.0.1:9115/probe?module=${kind}&target=198.18.2.2:${kind === 'tcp' ? 7000 : 8443}`;
    await lab.run('client', process.execPath, ['bench/driver-http.mjs', '--url', url, '--count', '50', '--concurrency', String(opts.concurrency)], { timeoutMs: 120_000 });
    const cpu0 = cpuSecondsOf(exporter.pid);
    const bb = await lab.run('client', process.execPath, ['bench/driver-http.mjs', '--url', url, '--count', String(count), '--concurrency', String(opts.concurrency)], {
      timeoutMs: 600_000,
    });
    if (bb.code !== 0) throw new Error(`blackbox driver failed: ${bb.stderr}`);
    const cpu = cpuSecondsOf(exporter.pid) - cpu0;
    const b = JSON.parse(bb.stdout.trim().split('\n').pop()!) as { probes: number; failures: number };
    rows.push({ kind, tool: 'blackbox_exporter', probes: b.probes, failures: b.failures, cpuSeconds: cpu, probesPerCpuSecond: b.probes / cpu, peakRssMiB: peakRssKiBOf(exporter.pid) / 1024 });

    if (kind === 'tls') {
      // The floor: Node's own handshakes to the same target, with nothing of callprobe around them.
      const floor = await lab.run(
        'client',
        process.execPath,
        ['bench/driver-tls-floor.mjs', '--host', '198.18.2.2', '--port', '8443', '--servername', 'tls.lab.test', '--ca', join(lab.tmpDir, 'ca.pem'), '--count', String(count), '--concurrency', String(opts.concurrency)],
        { timeoutMs: 600_000, env: callprobeEnv() },
      );
      if (floor.code !== 0) throw new Error(`tls floor driver failed: ${floor.stderr}`);
      const f = JSON.parse(floor.stdout.trim().split('\n').pop()!) as { probes: number; failures: number; cpuSeconds: number; maxRssKiB: number };
      rows.push({ kind, tool: 'node tls.connect', probes: f.probes, failures: f.failures, cpuSeconds: f.cpuSeconds, probesPerCpuSecond: f.probes / f.cpuSeconds, peakRssMiB: f.maxRssKiB / 1024 });
    }
  }
  await exporter.kill();
  await ca.destroy();
  return rows;
}

function cpuSecondsOf(pid: number): number {
  // Fields after the parenthesised command name: utime is the 14th field, stime the 15th (proc(5)).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function rssKiBOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

function peakRssKiBOf(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}
