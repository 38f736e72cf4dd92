import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import { spawnHost, type NsProcess } from '../lab/proc.js';
import { closedPort, dnsServer, tcpServer, type Running } from '../helpers/servers.js';

/**
 * The monitoring stack on loopback for the tests of config/prometheus and config/grafana: a real
 * callprobe daemon probing loopback targets, and real Prometheus processes scraping it. Every
 * process runs in its own process group and is stopped by PID (NsProcess.kill).
 */

export const ROOT = join(import.meta.dirname, '..', '..');
export const PROMETHEUS_DIR = join(ROOT, 'config', 'prometheus');
export const GRAFANA_DIR = join(ROOT, 'config', 'grafana');
const CLI = join(ROOT, 'dist', 'cli.js');

/**
 * The media gauges (docs/architecture.md#metrics), {service,target,shape}, and the media
 * diagnosis {service,target,diagnosis}: series only once a media phase ran; rules and panels use them.
 */
export const MEDIA_METRICS = [
  'callprobe_media_diagnosis',
  'callprobe_media_loss_ratio',
  'callprobe_media_jitter_seconds',
  'callprobe_media_mos',
  'callprobe_stream_cutoff_packets',
  'callprobe_stream_cutoff_bytes',
];

/** A shipped YAML file, parsed. */
export function loadYaml(path: string): Record<string, any> {
  return parse(readFileSync(path, 'utf8')) as Record<string, any>;
}

export interface Daemon {
  proc: NsProcess;
  /** Where its /metrics is. */
  address: string;
  stop(): Promise<void>;
}

/**
 * `callprobe run` with the targets the dashboard and the rules need, probed every 10 s (the shortest
 * interval a config may ask for):
 * - control/local: `ok.lab.test`, resolved by a loopback DNS server to 127.0.0.1, then a TCP echo
 *   server: a working dns and tcp control;
 * - loop/open: the echo server (ok);
 * - loop/closed: a port with nothing listening (connection_refused at tcp: blocked);
 * - loop/tampered: `tampered.lab.test`, answered with 10.1.2.3, a bogon outside the test
 *   allowlist (dns_bogon_error at dns: blocked, never connected to).
 */
export async function startDaemon(dir: string, vantage: string): Promise<Daemon> {
  mkdirSync(dir, { recursive: true });
  const server: Running = await tcpServer('echo');
  const dns: Running = await dnsServer({ 'ok.lab.test': { A: ['127.0.0.1'] }, 'tampered.lab.test': { A: ['10.1.2.3'] } });
  const refused = await closedPort();
  writeFileSync(
    join(dir, 'loop.yaml'),
    stringify({
      service: 'loop',
      targets: [
        { name: 'open', host: '127.0.0.1', port: server.port, phases: ['tcp'] },
        { name: 'closed', host: '127.0.0.1', port: refused, phases: ['tcp'] },
        { name: 'tampered', host: 'tampered.lab.test', port: server.port, phases: ['dns', 'tcp'] },
      ],
    }),
  );
  writeFileSync(
    join(dir, 'controls.yaml'),
    stringify({ service: 'control', control: true, targets: [{ name: 'local', host: 'ok.lab.test', port: server.port, phases: ['dns', 'tcp'] }] }),
  );
  const config = join(dir, 'callprobe.yaml');
  writeFileSync(
    config,
    stringify({
      vantage: { name: vantage },
      embeddedCatalogues: false,
      catalogues: ['loop.yaml', 'controls.yaml'],
      dataDir: join(dir, 'data'),
      schedule: { interval: '10s', jitter: 0, phaseTimeout: '2s' },
      http: { listen: '127.0.0.1:0' },
      dns: { resolver: `127.0.0.1:${dns.port}` },
      safety: { allow: ['127.0.0.0/8', '::1/128', '198.18.0.0/15'] },
    }),
  );
  const proc = spawnHost(process.execPath, [CLI, 'run', '--config', config]);
  const closeServers = async () => {
    await server.close();
    await dns.close();
  };
  try {
    const line = await proc.waitForLine('"http server listening"', 15_000);
    const { port } = (JSON.parse(line) as { listen: { port: number } }).listen;
    return {
      proc,
      address: `127.0.0.1:${port}`,
      stop: async () => {
        await proc.kill();
        await closeServers();
      },
    };
  } catch (err) {
    await proc.kill();
    await closeServers();
    throw err;
  }
}

export interface Prometheus {
  proc: NsProcess;
  base: string;
  stop(): Promise<void>;
}

/** Debian's prometheus 2.42 with `config`, its storage under `dir`, on a free loopback port. */
export async function startPrometheus(dir: string, config: Record<string, unknown>, flags: string[] = []): Promise<Prometheus> {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'prometheus.yml');
  writeFileSync(file, stringify(config));
  const port = await closedPort();
  const storage = flags.includes('--enable-feature=agent') ? `--storage.agent.path=${join(dir, 'wal')}` : `--storage.tsdb.path=${join(dir, 'tsdb')}`;
  const proc = spawnHost('prometheus', [
    `--config.file=${file}`,
    storage,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
    ...flags,
  ]);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(proc, base);
  return { proc, base, stop: async () => void (await proc.kill()) };
}

/** Waits for a Prometheus-family server's /-/ready; stops it and throws if it never gets there. */
export async function waitReady(proc: NsProcess, base: string): Promise<void> {
  try {
    await waitUntil(
      async () => {
        if (!proc.running) throw new Error(`process exited\n${proc.describe()}`);
        const res = await fetch(`${base}/-/ready`).catch(() => null);
        return res?.status === 200 ? true : undefined;
      },
      15_000,
      `${proc.command[0]} ready on ${base}`,
    );
  } catch (err) {
    await proc.kill();
    throw err;
  }
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface QueryAnswer {
  httpStatus: number;
  status: 'success' | 'error';
  error?: string;
  data?: { resultType: string; result: Sample[] | [number, string] };
}

/** An instant query through the HTTP API, as Grafana sends it. */
export async function query(base: string, expr: string): Promise<QueryAnswer> {
  const res = await fetch(`${base}/api/v1/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ query: expr }),
  });
  return { httpStatus: res.status, ...((await res.json()) as Omit<QueryAnswer, 'httpStatus'>) };
}

/** The vector an instant query returned; throws with Prometheus's error otherwise. */
export async function vector(base: string, expr: string): Promise<Sample[]> {
  const answer = await query(base, expr);
  if (answer.status !== 'success' || answer.data?.resultType !== 'vector') {
    throw new Error(`${expr}: ${answer.status} ${answer.error ?? answer.data?.resultType}`);
  }
  return answer.data.result as Sample[];
}

/** Polls `probe` until it returns something other than undefined. */
export async function waitUntil<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
      if (err instanceof Error && err.message.startsWith('process exited')) throw err;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await sleep(200);
  }
}

/** Waits until `expr` returns at least `min` series. */
export function waitForSeries(base: string, expr: string, min = 1, timeoutMs = 20_000): Promise<Sample[]> {
  return waitUntil(async () => {
    const samples = await vector(base, expr);
    return samples.length >= min ? samples : undefined;
  }, timeoutMs, `${expr} in ${base}`);
}

/** "service/target" → value, for compact exact assertions. */
export function byTarget(samples: Sample[], ...labels: string[]): Record<string, number> {
  const keys = labels.length > 0 ? labels : ['service', 'target'];
  return Object.fromEntries(samples.map((s) => [keys.map((k) => s.metric[k] ?? '').join('/'), Number(s.value[1])]));
}
