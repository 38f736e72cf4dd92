import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { Metrics } from '../../src/sinks/metrics.js';
import { closedPort } from '../helpers/servers.js';
import { NsProcess } from '../lab/proc.js';
import { spawnHost } from '../lab/proc.js';
import { MEDIA_METRICS, PROMETHEUS_DIR, loadYaml, waitReady, waitUntil } from './stack.js';

const RULES = join(PROMETHEUS_DIR, 'callprobe.rules.yml');
const RULE_TESTS = join(PROMETHEUS_DIR, 'callprobe.rules.test.yml');

/** Alerts about what the network does to the services: meaningless while the vantage is down. */
const SILENCED_BY_VANTAGE_DOWN = [
  'CallprobeServiceBlocked',
  'CallprobeDnsTampering',
  'CallprobeMediaDegraded',
  'CallprobeStreamCutoff',
  'CallprobeCallPathDiagnosis',
  'CallprobeAllowlistRegime',
  'CallprobeControlFailing',
];
const SILENCING_CLAUSE = 'unless on (vantage, job, instance) (vantage:callprobe_controls_failing:bool == 1)';

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface AlertTest {
  alertname: string;
  eval_time: string;
  exp_alerts: Array<{ exp_labels: Record<string, string> }>;
}

function run(cmd: string, args: string[]) {
  const res = spawnSync(cmd, args, { cwd: PROMETHEUS_DIR, encoding: 'utf8', timeout: 30_000 });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

const rules = (loadYaml(RULES).groups as Array<{ name: string; rules: Rule[] }>).flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert !== undefined);

describe('callprobe.rules.yml', () => {
  it('passes promtool check rules with every lint, 16 rules', () => {
    expect(run('promtool', ['check', 'rules', '--lint=all', '--lint-fatal', 'callprobe.rules.yml'])).toEqual({
      status: 0,
      stdout: 'Checking callprobe.rules.yml\n  SUCCESS: 16 rules found\n\n',
      stderr: '',
    });
  });

  it('passes its promtool unit tests', () => {
    expect(run('promtool', ['test', 'rules', 'callprobe.rules.test.yml'])).toEqual({
      status: 0,
      stdout: 'Unit Testing:  callprobe.rules.test.yml\n  SUCCESS\n\n',
      stderr: '',
    });
  });

  it('fails the unit tests when the vantage-down silencing is removed (the tests do test it)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'callprobe-rules-'));
    try {
      const text = loadYaml(RULES);
      for (const g of text.groups as Array<{ rules: Rule[] }>) {
        for (const r of g.rules) r.expr = r.expr.replace(SILENCING_CLAUSE, '');
      }
      writeFileSync(join(dir, 'callprobe.rules.yml'), stringify(text));
      copyFileSync(RULE_TESTS, join(dir, 'callprobe.rules.test.yml'));
      const res = spawnSync('promtool', ['test', 'rules', 'callprobe.rules.test.yml'], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
      expect(res.status).toBe(1);
      // Every silenced alert has a vantage whose controls fail in its test: each one now fires there.
      for (const name of SILENCED_BY_VANTAGE_DOWN) {
        expect(res.stdout + res.stderr).toContain(`alertname: ${name},`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names alerts CallprobeCamelCase with a severity, a summary and a description', () => {
    expect(alerts.map((a) => a.alert)).toEqual([
      'CallprobeServiceBlocked',
      'CallprobeDnsTampering',
      'CallprobeMediaDegraded',
      'CallprobeStreamCutoff',
      'CallprobeCallPathDiagnosis',
      'CallprobeAllowlistRegime',
      'CallprobeVantageDown',
      'CallprobeControlFailing',
      'CallprobeProbesNotRunning',
      'CallprobeDaemonDown',
      'CallprobeConfigReloadFailed',
      'CallprobeRecordsDropped',
    ]);
    for (const a of alerts) {
      expect(a.alert).toMatch(/^Callprobe[A-Z][a-z]+(?:[A-Z][a-z]+)*$/);
      expect(['critical', 'warning']).toContain(a.labels?.severity);
      expect(Object.keys(a.annotations ?? {}).sort()).toEqual(['description', 'summary']);
    }
    // level:metric:operations (Prometheus docs, "Recording rules" naming).
    for (const r of rules.filter((x) => x.record !== undefined)) expect(r.record).toMatch(/^[a-z_]+:callprobe_[a-z_]+:[a-z0-9_]+$/);
  });

  it('silences exactly the network-level alerts while the vantage is down, in the rules and in Alertmanager', () => {
    const silenced = alerts.filter((a) => a.expr.includes(SILENCING_CLAUSE)).map((a) => a.alert);
    expect(silenced).toEqual(SILENCED_BY_VANTAGE_DOWN);
    const inhibit = loadYaml(join(PROMETHEUS_DIR, 'alertmanager.example.yml')).inhibit_rules as Array<Record<string, string[]>>;
    expect(inhibit).toEqual([
      {
        source_matchers: ['alertname="CallprobeVantageDown"'],
        target_matchers: [`alertname=~"${SILENCED_BY_VANTAGE_DOWN.join('|')}"`],
        equal: ['vantage', 'job', 'instance'],
      },
      // Under an allowlist, a service alert from older rules stays quiet too.
      { source_matchers: ['alertname="CallprobeAllowlistRegime"'], target_matchers: ['alertname="CallprobeServiceBlocked"'], equal: ['vantage', 'job', 'instance'] },
    ]);
  });

  it('has a unit test where each alert fires and one where it does not', () => {
    const tests = (loadYaml(RULE_TESTS).tests as Array<{ alert_rule_test?: AlertTest[] }>).flatMap((t) => t.alert_rule_test ?? []);
    for (const a of alerts) {
      const mine = tests.filter((t) => t.alertname === a.alert);
      expect(mine.some((t) => t.exp_alerts.length > 0), `${a.alert} fires somewhere`).toBe(true);
      expect(mine.some((t) => t.exp_alerts.length === 0), `${a.alert} stays quiet somewhere`).toBe(true);
    }
  });

  it('uses only metrics callprobe exports (src/sinks/metrics.ts) and its media gauges', async () => {
    const exported = new Set((await new Metrics('test').registry.getMetricsAsJSON()).map((m) => m.name));
    // Raw metric names, not the middle of a recording rule's level:metric:operations name.
    const used = new Set(rules.flatMap((r) => r.expr.match(/(?<![:\w])callprobe_[a-z_]+(?![:\w])/g) ?? []));
    for (const name of used) expect(exported.has(name) || MEDIA_METRICS.includes(name), name).toBe(true);
    expect([...used].sort()).toEqual([
      'callprobe_build_info',
      'callprobe_config_last_reload_successful',
      'callprobe_media_diagnosis',
      'callprobe_media_jitter_seconds',
      'callprobe_media_loss_ratio',
      'callprobe_media_mos',
      'callprobe_phase_success',
      'callprobe_probe_failures_total',
      'callprobe_probe_last_run_timestamp_seconds',
      'callprobe_probe_runs_total',
      'callprobe_probe_scope',
      'callprobe_probe_verdict',
      'callprobe_records_dropped_total',
      'callprobe_stream_cutoff_bytes',
    ]);
  });
});

describe('example Prometheus configs', () => {
  it('prometheus.example.yml and central.example.yml pass promtool check config, with the rules', () => {
    for (const file of ['prometheus.example.yml', 'central.example.yml']) {
      expect(run('promtool', ['check', 'config', file])).toEqual({
        status: 0,
        stdout: `Checking ${file}\n  SUCCESS: 1 rule files found\n SUCCESS: ${file} is valid prometheus config file syntax\n\nChecking callprobe.rules.yml\n  SUCCESS: 16 rules found\n\n`,
        stderr: '',
      });
    }
  });

  it('agent.example.yml passes promtool check config --agent', () => {
    expect(run('promtool', ['check', 'config', '--agent', 'agent.example.yml'])).toEqual({
      status: 0,
      stdout: 'Checking agent.example.yml\n SUCCESS: agent.example.yml is valid prometheus config file syntax\n\n',
      stderr: '',
    });
  });
});

const ALERTMANAGER = ['prometheus-alertmanager', 'alertmanager'].find((bin) => spawnSync(bin, ['--version']).status === 0);
const AMTOOL_OK = spawnSync('amtool', ['--version']).status === 0;
if ((!ALERTMANAGER || !AMTOOL_OK) && process.env.CI !== 'true') {
  console.warn('alertmanager tests skipped: install prometheus-alertmanager (Debian) to run them');
}

describe.skipIf((!ALERTMANAGER || !AMTOOL_OK) && process.env.CI !== 'true')('alertmanager.example.yml with a real Alertmanager', () => {
  let dir: string;
  let am: NsProcess;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-am-'));
    const config = loadYaml(join(PROMETHEUS_DIR, 'alertmanager.example.yml'));
    // Nothing must be notified anywhere: the receiver points at a loopback port nobody listens on.
    config.receivers[0].webhook_configs[0].url = `http://127.0.0.1:${await closedPort()}/`;
    writeFileSync(join(dir, 'alertmanager.yml'), stringify(config));
    const port = await closedPort();
    base = `http://127.0.0.1:${port}`;
    am = spawnHost(ALERTMANAGER ?? 'prometheus-alertmanager', [
      `--config.file=${join(dir, 'alertmanager.yml')}`,
      `--storage.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--cluster.listen-address=', // no gossip: a single Alertmanager
      '--log.level=warn',
    ]);
    await waitReady(am, base);
  });
  afterAll(async () => {
    await am?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes amtool check-config', () => {
    expect(run('amtool', ['check-config', 'alertmanager.example.yml'])).toEqual({
      status: 0,
      stdout: "Checking 'alertmanager.example.yml'  SUCCESS\nFound:\n - global config\n - route\n - 2 inhibit rules\n - 1 receivers\n - 0 templates\n\n",
      stderr: '',
    });
  });

  it('CallprobeVantageDown inhibits the network-level alerts of its own vantage only', async () => {
    const at = { job: 'callprobe', instance: '127.0.0.1:9465' };
    const posted = [
      { alertname: 'CallprobeVantageDown', severity: 'warning', vantage: 'spb-1', ...at },
      { alertname: 'CallprobeServiceBlocked', severity: 'critical', vantage: 'spb-1', service: 'telegram', ...at },
      { alertname: 'CallprobeStreamCutoff', severity: 'warning', vantage: 'spb-1', service: 'whatsapp', target: 'relay-1', shape: 'rtp', ...at },
      { alertname: 'CallprobeDaemonDown', severity: 'critical', vantage: 'spb-1', ...at },
      { alertname: 'CallprobeServiceBlocked', severity: 'critical', vantage: 'msk-1', service: 'telegram', ...at },
    ];
    const res = await fetch(`${base}/api/v2/alerts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(posted.map((labels) => ({ labels, annotations: { summary: 'test' } }))),
    });
    expect(res.status).toBe(200);
    type Listed = { labels: Record<string, string>; status: { state: string; inhibitedBy: string[] }; fingerprint: string };
    const states = await waitUntil(
      async () => {
        const listed = (await (await fetch(`${base}/api/v2/alerts`)).json()) as Listed[];
        if (listed.length < posted.length || !listed.some((a) => a.status.state === 'suppressed')) return undefined;
        const source = listed.find((a) => a.labels.alertname === 'CallprobeVantageDown')!;
        return Object.fromEntries(
          listed.map((a) => [
            `${a.labels.alertname}@${a.labels.vantage}`,
            `${a.status.state}${a.status.inhibitedBy.length > 0 ? ` by ${a.status.inhibitedBy.join(',') === source.fingerprint ? 'VantageDown' : a.status.inhibitedBy.join(',')}` : ''}`,
          ]),
        );
      },
      10_000,
      'inhibition in Alertmanager',
    );
    expect(states).toEqual({
      'CallprobeVantageDown@spb-1': 'active',
      'CallprobeServiceBlocked@spb-1': 'suppressed by VantageDown',
      'CallprobeStreamCutoff@spb-1': 'suppressed by VantageDown',
      'CallprobeDaemonDown@spb-1': 'active',
      'CallprobeServiceBlocked@msk-1': 'active',
    });
  });
});
