import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ProbeResult } from '../../src/result.js';
import type { Lab, LabRole } from './netns.js';
import type { NsProcess, RunResult } from './proc.js';
import { REPO_ROOT } from './netns.js';

/** Paths of the lab's scripts, absolute so they work from any cwd. */
export const ECHO_SERVER_SCRIPT = join(REPO_ROOT, 'test/lab/servers/echo-server.ts');
export const LAB_CLIENT_SCRIPT = join(REPO_ROOT, 'test/lab/clients/lab-client.ts');

export interface ServerEvent {
  event: string;
  listener: string;
  peer?: string;
  [key: string]: unknown;
}

export interface LabServer {
  process: NsProcess;
  /** Listener name -> bound port (useful with port 0). */
  ports: Record<string, number>;
  /** `EVENT {...}` lines the server printed so far. */
  events(): ServerEvent[];
  /** Resolves with the first event (past or future) that matches. */
  waitForEvent(match: (e: ServerEvent) => boolean, timeoutMs?: number): Promise<ServerEvent>;
  stop(): Promise<void>;
}

function parseEvent(line: string): ServerEvent | null {
  return line.startsWith('EVENT ') ? (JSON.parse(line.slice(6)) as ServerEvent) : null;
}

/**
 * Starts a lab server script (the `READY {...}` / `EVENT {...}` protocol of servers/echo-server.ts)
 * with `node --import tsx` and resolves when it printed READY.
 */
export async function startNodeServer(
  lab: Lab,
  script: string,
  args: readonly string[],
  opts: { role?: LabRole; readyTimeoutMs?: number } = {},
): Promise<LabServer> {
  const proc = lab.spawnNode(opts.role ?? 'server', script, args);
  const ready = await proc.waitForLine(/^READY\b/, opts.readyTimeoutMs ?? 15_000);
  const info = JSON.parse(ready.slice(5).trim() || '{"listeners":[]}') as { listeners?: Array<{ name: string; port: number }> };
  const ports = Object.fromEntries((info.listeners ?? []).map((l) => [l.name, l.port]));
  const events = () => proc.lines.map(parseEvent).filter((e): e is ServerEvent => e !== null);
  return {
    process: proc,
    ports,
    events,
    waitForEvent: async (match, timeoutMs = 5000) => {
      const line = await proc.waitForLine((l) => {
        const e = parseEvent(l);
        return e !== null && match(e);
      }, timeoutMs);
      return parseEvent(line)!;
    },
    stop: async () => {
      await proc.kill();
    },
  };
}

/** Starts test/lab/servers/echo-server.ts with a listener config (see that file). */
export function startEchoServer(lab: Lab, config: { listeners: Array<Record<string, unknown>> }, role: LabRole = 'server'): Promise<LabServer> {
  return startNodeServer(lab, ECHO_SERVER_SCRIPT, ['--config', JSON.stringify(config)], { role });
}

export interface LabClientResult {
  ok: boolean;
  code?: string;
  [key: string]: unknown;
}

/**
 * Runs test/lab/clients/lab-client.ts in a namespace (default: client) and returns its JSON line.
 * `flags` become `--key value`. Throws, with its output, if the client itself broke.
 */
export async function labClient(
  lab: Lab,
  command: 'tcp' | 'udp' | 'dns' | 'tls' | 'ws',
  flags: Record<string, string | number>,
  opts: { role?: LabRole; timeoutMs?: number } = {},
): Promise<LabClientResult> {
  const args = [command, ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const res: RunResult = await lab.runNode(opts.role ?? 'client', LAB_CLIENT_SCRIPT, args, { timeoutMs: opts.timeoutMs ?? 20_000 });
  const line = res.stdout.trim().split('\n').pop() ?? '';
  if (res.code !== 0 || !line.startsWith('{')) {
    throw new Error(`lab-client ${args.join(' ')} failed (code ${res.code}, timedOut ${res.timedOut}):\n${res.stderr}${res.stdout}`);
  }
  return JSON.parse(line) as LabClientResult;
}

export interface OnceOptions {
  /** Catalogue files to write in the lab's temp dir: file name -> YAML text. */
  catalogues?: Record<string, string>;
  /** Catalogue files the test already wrote in the lab's temp dir. */
  catalogueFiles?: string[];
  /** Extra lines for the config (YAML at top level), e.g. `tls: { extraCa: [ca.pem] }`. */
  extraConfig?: string;
  phaseTimeout?: string;
  concurrency?: number;
  /** The lab resolver, default the server's address. */
  resolver?: string;
  /** `safety.deny` entries. */
  deny?: string[];
  timeoutMs?: number;
}

export interface OnceRun {
  code: number | null;
  stderr: string;
  results: Map<string, ProbeResult>;
  /** The result for a target name; throws with the list of targets when it is missing. */
  get(target: string): ProbeResult;
}

/**
 * Writes a lab config (the given catalogues only, never the embedded real addresses; the lab
 * allowlist; the lab resolver) and returns its path: `callprobe.yaml` in the lab's temp dir unless named.
 */
export function writeLabConfig(lab: Lab, opts: OnceOptions & { file?: string; dataDir?: string; schedule?: string }): string {
  const catalogues = opts.catalogues ?? {};
  for (const [file, text] of Object.entries(catalogues)) writeFileSync(join(lab.tmpDir, file), text);
  const config = join(lab.tmpDir, opts.file ?? 'callprobe.yaml');
  writeFileSync(
    config,
    `vantage: { name: lab-client }
embeddedCatalogues: false
catalogues: [${[...Object.keys(catalogues), ...(opts.catalogueFiles ?? [])].join(', ')}]
schedule: { concurrency: ${opts.concurrency ?? 12}, phaseTimeout: ${opts.phaseTimeout ?? '2s'}${opts.schedule ? `, ${opts.schedule}` : ''} }
dataDir: ${opts.dataDir ?? join(lab.tmpDir, 'data')}
dns: { resolver: "${opts.resolver ?? '198.18.2.2'}:53" }
safety:
  allow: [127.0.0.0/8, "::1/128", 198.18.0.0/15]
  deny: [${(opts.deny ?? []).join(', ')}]
# The lab asserts the exact addresses it set up (its own, lab-only): the privacy tokens have tests of their own.
records: { keepOwnAddresses: true }
${opts.extraConfig ?? ''}
`,
  );
  return config;
}

/** Runs one `callprobe once --json` cycle in the client namespace with a lab config (writeLabConfig). */
export async function runOnceInLab(lab: Lab, opts: OnceOptions): Promise<OnceRun> {
  const config = writeLabConfig(lab, opts);
  const res = await lab.run('client', process.execPath, ['dist/cli.js', 'once', '--config', config, '--json'], { timeoutMs: opts.timeoutMs ?? 30_000 });
  if (!res.stdout.trim()) throw new Error(`callprobe once printed nothing (exit ${res.code}): ${res.stderr}`);
  const results = new Map(
    res.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ProbeResult)
      .map((r) => [r.target, r]),
  );
  return {
    code: res.code,
    stderr: res.stderr,
    results,
    get(target) {
      const r = results.get(target);
      if (!r) throw new Error(`no result for ${target} (have: ${[...results.keys()].join(', ')})`);
      return r;
    },
  };
}
