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
  tool: 'callprobe' | 'blackbox_exporter';
  probes: number;
  failures: number;
  cpuSeconds: number;
  probesPerCpuSecond: number;
  peakRssMiB: number;
}

const CLK_TCK = 100; // USER_HZ on Linux (sysconf(_SC_CLK_TCK)), the unit of /proc/PID/stat times

export async function benchProbes(lab: Lab, opts: { tcpCount: number; tlsCount: number; concurrency: number }): Promise<ProbeBenchRow[]> {
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

  const rows: ProbeBenchRow[] = [];
  for (const kind of ['tcp', 'tls'] as const) {
    const count = kind === 'tcp' ? opts.tcpCount : opts.tlsCount;
    const cp = await lab.run(
      'client',
      process.execPath,
      ['bench/driver-callprobe.mjs', '--config', config, '--spec', `bench/${kind}`, '--count', String(count), '--concurrency', String(opts.concurrency)],
      { timeoutMs: 600_000 },
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

function peakRssKiBOf(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}
