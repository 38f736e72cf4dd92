import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeResult } from '../src/result.js';
import { closedPort, tcpServer, type Running } from './helpers/servers.js';

const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'config');

function cli(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 });
}

describe('callprobe CLI', () => {
  let dir: string;
  let server: Running;
  let refused: number;
  let config: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-cli-'));
    server = await tcpServer('echo');
    refused = await closedPort();
    writeFileSync(
      join(dir, 'loop.yaml'),
      `service: loop
targets:
  - name: open
    host: 127.0.0.1
    port: ${server.port}
    phases: [tcp]
  - name: closed
    host: 127.0.0.1
    port: ${refused}
    phases: [tcp]
`,
    );
    writeFileSync(
      join(dir, 'controls.yaml'),
      `service: control
control: true
targets:
  - name: local
    host: 127.0.0.1
    port: ${server.port}
    phases: [tcp]
`,
    );
    config = join(dir, 'callprobe.yaml');
    writeFileSync(config, configText('cli-test', 10));
  });
  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function configText(vantage: string, intervalS: number): string {
    return `vantage: { name: ${vantage} }
embeddedCatalogues: false
catalogues: [loop.yaml, controls.yaml]
dataDir: ${join(dir, 'data')}
schedule: { interval: ${intervalS}s, jitter: 0, phaseTimeout: 2s }
http: { listen: "127.0.0.1:0" }
dns: { resolver: "127.0.0.1:53" }
safety: { allow: [127.0.0.0/8, "::1/128", 198.18.0.0/15] }
`;
  }

  it('prints its version and usage; bad usage exits 2', () => {
    expect(cli(['--version']).stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    const none = cli([]);
    expect(none.status).toBe(2);
    expect(none.stdout).toContain('usage:');
    const bad = cli(['probe-everything']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('callprobe: unknown command "probe-everything"');
    expect(cli(['once', '--frobnicate']).status).toBe(2);
  });

  it('check-config accepts the example and rejects a bad file with every problem, exit 2', () => {
    const ok = cli(['check-config', join(ROOT, 'config', 'callprobe.example.yaml')]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/callprobe\.example\.yaml: ok \(\d+ targets\)/);
    const bad = cli(['check-config', join(FIXTURES, 'invalid-many.yaml')]);
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n').map((l) => l.replace(`${FIXTURES}/`, ''))).toEqual(
      readFileSync(join(FIXTURES, 'invalid-many.expected'), 'utf8').trim().split('\n'),
    );
  });

  it('plan lists the embedded WhatsApp, Telegram and control targets and sends nothing', () => {
    const out = cli(['plan']);
    expect(out.status).toBe(0);
    for (const id of ['telegram/dc1', 'telegram/ws-dc2', 'whatsapp/web-ws', 'whatsapp/g-443', 'control/domestic-yandex']) {
      expect(out.stdout).toContain(id);
    }
    const json = cli(['plan', '--json']).stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string });
    expect(json.length).toBeGreaterThanOrEqual(10);
  });

  it('once --json prints one ProbeResult per line, judges against controls, exits 1 when a probe is not ok', () => {
    const out = cli(['once', '--config', config, '--json']);
    expect(out.status).toBe(1);
    const results = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as ProbeResult);
    // Controls run first: service verdicts lean on them.
    expect(`${results[0]!.service}/${results[0]!.target}`).toBe('control/local');
    expect(results.map((r) => `${r.service}/${r.target}`).sort()).toEqual(['control/local', 'loop/closed', 'loop/open']);
    const byId = new Map(results.map((r) => [`${r.service}/${r.target}`, r]));
    expect(byId.get('control/local')).toMatchObject({ verdict: 'ok', failure: null, vantage: { name: 'cli-test' } });
    expect(byId.get('loop/open')).toMatchObject({ verdict: 'ok', failure: null });
    expect(byId.get('loop/closed')).toMatchObject({
      verdict: 'blocked',
      failure: 'connection_refused',
      failedPhase: 'tcp',
      control: { target: 'local', phase: 'tcp', ok: true },
    });
    // The socket's own address is a token of this install, the same for the same address.
    // (A refused connect never had a local address.)
    const local = results.filter((r) => r.failure === null).map((r) => r.phases[0]!.evidence.localAddress as string);
    expect(local).toHaveLength(2);
    for (const l of local) expect(l).toMatch(/^own-v4:[0-9a-f]{8}:\d+$/);
    expect(new Set(local.map((l) => l.split(':')[1])).size).toBe(1);
  });

  it('--help on every command, with its own options and no source paths; a wrong option answers with that help', () => {
    for (const command of ['run', 'once', 'plan', 'report', 'check-config', 'reflector', 'healthcheck']) {
      const out = cli([command, '--help']);
      expect({ command, status: out.status, stderr: out.stderr }).toEqual({ command, status: 0, stderr: '' });
      expect(out.stdout.startsWith(`usage: callprobe ${command}`)).toBe(true);
      expect(out.stdout).toContain('-h, --help');
      expect(out.stdout).not.toMatch(/src\/|\.ts\b/);
      expect(cli([command, '-h']).stdout).toBe(out.stdout);
    }
    expect(cli(['--help']).stdout).not.toMatch(/src\/|\.ts\b/);
    const bad = cli(['reflector', '--frobnicate']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe(`callprobe: Unknown option '--frobnicate'\n\n${cli(['reflector', '--help']).stdout}`);
  });

  it('report reads the records: the text, JSON and CSV of the fixed records, exactly; bad options exit 2', () => {
    const fixtures = join(ROOT, 'test', 'fixtures');
    for (const [format, file] of [['text', 'expected.text'], ['json', 'expected.json'], ['csv', 'expected.csv']]) {
      const out = cli(['report', '--records', join(fixtures, 'records'), '--since', '2026-11-29T00:00:00Z', '--format', format!]);
      expect({ format, status: out.status, stderr: out.stderr }).toEqual({ format, status: 0, stderr: '' });
      expect(out.stdout).toBe(readFileSync(join(fixtures, 'report', file!), 'utf8'));
    }
    const telegram = cli(['report', '--records', join(fixtures, 'records'), '--since', '2026-11-29', '--service', 'telegram', '--format', 'csv']);
    expect(telegram.stdout.trim().split('\r\n').map((l) => l.split(',').slice(0, 2).join('/'))).toEqual(['service/target', 'telegram/dc2', 'telegram/stream']);
    expect(cli(['report', '--format', 'xml']).stderr).toMatch(/^callprobe: --format xml: one of text, json, csv\n\nusage: callprobe report /);
    expect(cli(['report', '--since', 'last week']).status).toBe(2);
  });

  it('once says per service what works and what breaks', () => {
    const out = cli(['once', '--config', config]);
    expect(out.status).toBe(1);
    expect(out.stdout).toBe(
      ['loop messaging: partly blocked: connecting fails: refused (connection_refused) (1 blocked, 1 ok of 2); only this service fails: other foreign destinations work', 'Controls:       1 of 1 working', ''].join('\n'),
    );
  });

  it('once --targets prints a table; --service limits services but keeps controls', () => {
    const out = cli(['once', '--config', config, '--service', 'loop', '--targets']);
    expect(out.status).toBe(1);
    const lines = out.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines.find((l) => l.includes('loop/closed'))).toMatch(/^blocked\s+loop\/closed\s+tcp connection_refused \(control local\/tcp: ok\)$/);
    expect(cli(['once', '--config', config, '--service', 'nope']).status).toBe(2);
  });

  it('run: a port in use is a clear startup error, exit 1', async () => {
    const taken = await tcpServer('echo');
    try {
      const file = join(dir, 'taken.yaml');
      writeFileSync(file, configText('taken', 60).replace('127.0.0.1:0', `127.0.0.1:${taken.port}`));
      const out = cli(['run', '--config', file]);
      expect(out.status).toBe(1);
      expect(out.stderr).toBe(`callprobe: cannot listen on 127.0.0.1:${taken.port} (http.listen): EADDRINUSE\n`);
    } finally {
      await taken.close();
    }
  });

  it('run: serves HTTP, writes records, reloads on SIGHUP (keeping the old config when the new one is bad), stops on SIGTERM', async () => {
    const daemon = spawn(process.execPath, [CLI, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    const logs: Array<Record<string, unknown>> = [];
    const waiters: Array<{ msg: string; resolve: (l: Record<string, unknown>) => void }> = [];
    createInterface({ input: daemon.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      for (const w of waiters.splice(0)) {
        if (entry.msg === w.msg) w.resolve(entry);
        else waiters.push(w);
      }
    });
    const waitFor = (msg: string, count = 1) =>
      new Promise<Record<string, unknown>>((resolve) => {
        const seen = logs.filter((l) => l.msg === msg);
        if (seen.length >= count) return resolve(seen[count - 1]!);
        const check = (l: Record<string, unknown>) => (logs.filter((x) => x.msg === msg).length >= count ? resolve(l) : waiters.push({ msg, resolve: check }));
        waiters.push({ msg, resolve: check });
      });
    try {
      const listening = await waitFor('http server listening');
      const port = (listening.listen as { port: number }).port;
      const base = `http://127.0.0.1:${port}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      // Controls first, then services; wait until every target has run at least once.
      const probed = () => new Set(logs.filter((l) => l.msg === 'probe finished').map((l) => l.probe));
      while (probed().size < 3) await waitFor('probe finished', logs.filter((l) => l.msg === 'probe finished').length + 1);
      const status = (await (await fetch(`${base}/api/status`)).json()) as { targets: Array<{ id: string; latest: ProbeResult | null }> };
      expect(status.targets.map((t) => t.id).sort()).toEqual(['control/local', 'loop/closed', 'loop/open']);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toContain('callprobe_config_last_reload_successful 1');
      expect(metrics).toMatch(/callprobe_probe_failures_total\{service="loop",target="closed",phase="tcp",code="connection_refused"\} [1-9]/);

      writeFileSync(config, configText('renamed', 10) + 'bogus: true\n');
      daemon.kill('SIGHUP');
      await waitFor('configuration reload failed: keeping the previous configuration');
      expect(await (await fetch(`${base}/metrics`)).text()).toContain('callprobe_config_last_reload_successful 0');

      // The reload renames the vantage and sets a token: both apply at once (a leaked token is rotated by a reload).
      const token = 'rotated-0123456789abcdef';
      writeFileSync(config, configText('renamed', 10).replace('http: { listen: "127.0.0.1:0" }', `http: { listen: "127.0.0.1:0", token: "${token}" }`));
      daemon.kill('SIGHUP');
      const reloaded = await waitFor('configuration reloaded');
      expect(reloaded.applied).toEqual(['http.token', 'vantage.name']);
      expect(JSON.stringify(logs)).not.toContain(token);
      expect((await fetch(`${base}/metrics`)).status).toBe(401);
      const authorized = { headers: { Authorization: `Bearer ${token}` } };
      const after = await (await fetch(`${base}/metrics`, authorized)).text();
      expect(after).toContain('callprobe_config_last_reload_successful 1');
      expect(after).toMatch(/callprobe_build_info\{version="[^"]+",vantage="renamed"\} 1/);
      expect(after).not.toContain('vantage="cli-test"');
      expect(((await (await fetch(`${base}/api/status`, authorized)).json()) as { vantage: string }).vantage).toBe('renamed');
      const finishedBefore = logs.filter((l) => l.msg === 'probe finished').length;
      await waitFor('probe finished', finishedBefore + 1);

      const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
      daemon.kill('SIGTERM');
      expect(await exited).toBe(0);
      const recordsDir = join(dir, 'data', 'records');
      const lines = readdirSync(recordsDir).flatMap((f) => readFileSync(join(recordsDir, f), 'utf8').trim().split('\n'));
      const results = lines.map((l) => JSON.parse(l) as ProbeResult);
      expect(results.length).toBe(logs.filter((l) => l.msg === 'probe finished').length);
      expect(results.some((r) => r.vantage.name === 'renamed')).toBe(true);
      // Records carry no address of the vantage's own sockets.
      for (const r of results.filter((x) => x.failure === null)) expect(r.phases[0]!.evidence.localAddress).toMatch(/^own-v4:[0-9a-f]{8}:\d+$/);
      expect(logs.at(-1)!.msg).toBe('stopped');
    } finally {
      daemon.kill('SIGKILL');
    }
  });
});
