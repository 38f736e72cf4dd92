import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';
import {
  GRAFANA_DIR,
  MEDIA_METRICS,
  PROMETHEUS_DIR,
  byTarget,
  loadYaml,
  query,
  startDaemon,
  startPrometheus,
  vector,
  waitForSeries,
  waitUntil,
  type Daemon,
  type Prometheus,
} from './stack.js';

interface Target {
  refId: string;
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
  gridPos: { h: number; w: number; x: number; y: number };
}
interface Variable {
  type: string;
  name: string;
  query: string;
  datasource?: { type: string; uid: string };
  includeAll?: boolean;
  multi?: boolean;
  allValue?: string;
}

const DASHBOARD_TEXT = readFileSync(join(GRAFANA_DIR, 'callprobe.json'), 'utf8');
const dashboard = JSON.parse(DASHBOARD_TEXT) as { uid: string; panels: Panel[]; templating: { list: Variable[] } };
const allPanels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = allPanels.filter((p) => p.type !== 'row');
const variables = dashboard.templating.list;
const DS = { type: 'prometheus', uid: '${datasource}' };

/**
 * What Grafana sends for a panel query when every variable is "All": the multi-value label
 * variables become the regex `.*`, the interval macros a duration.
 */
function substitute(expr: string): string {
  return expr
    .replace(/\$\{(vantage|service|target)(?::[a-z]+)?\}|\$(vantage|service|target)\b/g, '.*')
    .replace(/\$__rate_interval\b|\$\{__rate_interval\}|\$__interval\b|\$__range\b/g, '1m');
}

/** A variable's `label_values(selector, label)` as the PromQL Grafana's query amounts to. */
function variableQuery(v: Variable): string {
  const m = /^label_values\((.+),\s*([a-z_]+)\)$/.exec(v.query);
  if (!m) throw new Error(`${v.name}: not label_values(): ${v.query}`);
  return `group by (${m[2]}) (${substitute(m[1]!)})`;
}

/** Panels whose data a loopback daemon without media targets has. */
const MEDIA_PANELS = ['Media loss', 'Media jitter', 'MOS (estimated)', 'Stream cut-offs', 'Call-path diagnosis'];

describe('Grafana dashboard: structure', () => {
  it('picks its Prometheus through a `datasource` variable, never ${DS_...} inputs (they break file provisioning)', () => {
    expect(variables[0]).toMatchObject({ type: 'datasource', name: 'datasource', query: 'prometheus' });
    expect(DASHBOARD_TEXT).not.toMatch(/__inputs|__requires|DS_PROMETHEUS|\$\{DS_/);
    expect(dashboard.uid).toBe('callprobe');
  });

  it('every panel and every one of its targets uses ${datasource}', () => {
    expect(queryPanels.length).toBe(20);
    for (const p of queryPanels) {
      expect(p.datasource, p.title).toEqual(DS);
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets!) {
        expect(t.datasource, `${p.title} ${t.refId}`).toEqual(DS);
        expect(t.expr.trim(), `${p.title} ${t.refId}`).not.toBe('');
      }
    }
  });

  it('has vantage, service and target variables from label_values, each narrowing the next, All = .*', () => {
    expect(variables.slice(1).map((v) => [v.name, v.type, v.query])).toEqual([
      ['vantage', 'query', 'label_values(callprobe_probe_runs_total, vantage)'],
      ['service', 'query', 'label_values(callprobe_probe_runs_total{vantage=~"$vantage"}, service)'],
      ['target', 'query', 'label_values(callprobe_probe_runs_total{vantage=~"$vantage", service=~"$service"}, target)'],
    ]);
    for (const v of variables.slice(1)) expect(v).toMatchObject({ datasource: DS, includeAll: true, multi: true, allValue: '.*' });
  });

  it('has the verdict, phase, failure, media and operation panels, with unique ids and no overlap on the 24-column grid', () => {
    expect(allPanels.map((p) => p.title)).toEqual([
      'The answer',
      'Can people call? (per service and path)',
      "This vantage's network",
      'Verdicts',
      'Verdict per target',
      'Controls succeeding',
      'Blocked targets',
      'Failure scope per target',
      'Phases',
      'Phase success (last run)',
      'Phase durations',
      'Failures by code',
      'Media',
      'Media loss',
      'Media jitter',
      'MOS (estimated)',
      'Stream cut-offs',
      'Call-path diagnosis',
      'Operation',
      'Time since last run',
      'Time since last success',
      'Runs and overlaps',
      'Records dropped',
      'Configuration',
      'Daemons',
    ]);
    expect(new Set(allPanels.map((p) => p.id)).size).toBe(allPanels.length);
    const cells = new Set<string>();
    for (const p of allPanels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          expect(cells.has(`${i},${j}`), `${p.title} overlaps at ${i},${j}`).toBe(false);
          cells.add(`${i},${j}`);
        }
      }
    }
  });

  it('filters every per-target metric by the vantage, service and target variables', () => {
    for (const p of queryPanels) {
      for (const t of p.targets!) {
        expect(t.expr, `${p.title} ${t.refId}`).toContain('vantage=~"$vantage"');
        // Per-target metrics (those with a target label) follow the service and target variables,
        // except where a panel is about the controls on purpose.
        if (!t.expr.includes('service="control"') && /callprobe_(probe_verdict|phase_success|probe_failures_total|probe_last_|probe_runs_total|media_|stream_cutoff_)/.test(t.expr)) {
          expect(t.expr, `${p.title} ${t.refId}`).toContain('target=~"$target"');
        }
      }
    }
  });

  it('ships provisioning examples: a Prometheus data source and a file provider', () => {
    const ds = loadYaml(join(GRAFANA_DIR, 'provisioning', 'datasources', 'callprobe.yml'));
    expect(ds).toMatchObject({ apiVersion: 1, datasources: [{ type: 'prometheus', access: 'proxy', url: 'http://127.0.0.1:9090' }] });
    const provider = loadYaml(join(GRAFANA_DIR, 'provisioning', 'dashboards', 'callprobe.yml'));
    expect(provider).toMatchObject({ apiVersion: 1, providers: [{ name: 'callprobe', type: 'file', options: { path: '/var/lib/grafana/dashboards/callprobe' } }] });
  });
});

describe('Grafana dashboard: every query against a real Prometheus scraping a real daemon', () => {
  let dir: string;
  let daemon: Daemon | undefined;
  let prom: Prometheus | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-grafana-'));
    daemon = await startDaemon(join(dir, 'daemon'), 'grafana-lab');
    // The shipped single-vantage config, pointed at this daemon, scraping and evaluating every second.
    const config = loadYaml(join(PROMETHEUS_DIR, 'prometheus.example.yml'));
    const scrape = config.scrape_configs[0];
    expect(scrape.job_name).toBe('callprobe');
    expect(scrape.static_configs[0].labels.vantage).toBe('my-vps-1');
    scrape.static_configs[0] = { targets: [daemon.address], labels: { vantage: 'grafana-lab' } };
    config.global = { scrape_interval: '1s', evaluation_interval: '1s' };
    config.rule_files = [join(PROMETHEUS_DIR, 'callprobe.rules.yml')];
    delete config.alerting; // no Alertmanager here
    prom = await startPrometheus(join(dir, 'prometheus'), config);
    // Rates need two samples that differ: wait until every target has run and the two failing
    // ones have failed twice (their failure series start at their first failure), 10 s apart.
    await waitForSeries(prom.base, 'increase(callprobe_probe_runs_total[1m]) > 0', 4, 45_000);
    await waitForSeries(prom.base, 'increase(callprobe_probe_failures_total[1m]) > 0', 2, 45_000);
  });
  afterAll(async () => {
    await prom?.stop();
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('uses only metric names the live daemon exports, or the media gauges', async () => {
    const text = await (await fetch(`http://${daemon!.address}/metrics`)).text();
    const exported = new Set<string>();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      exported.add(m[1]!);
      if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m[1]! + s);
    }
    const used = new Set(queryPanels.flatMap((p) => p.targets!.flatMap((t) => t.expr.match(/(?<![:\w])callprobe_[a-z_]+/g) ?? [])));
    for (const name of used) expect(exported.has(name) || MEDIA_METRICS.includes(name), name).toBe(true);
    expect(MEDIA_METRICS.filter((m) => !used.has(m))).toEqual([]);
  });

  it('runs every panel query without error; all but the media panels return data', async () => {
    let ran = 0;
    for (const p of queryPanels) {
      for (const t of p.targets!) {
        const expr = substitute(t.expr);
        expect(expr, `${p.title} ${t.refId}`).not.toContain('$');
        const answer = await query(prom!.base, expr);
        expect({ panel: p.title, ref: t.refId, status: answer.status, error: answer.error }).toEqual({
          panel: p.title,
          ref: t.refId,
          status: 'success',
          error: undefined,
        });
        const result = answer.data!.result as unknown[];
        if (!MEDIA_PANELS.includes(p.title)) expect(result.length, `${p.title} ${t.refId} returns data`).toBeGreaterThan(0);
        ran++;
      }
    }
    expect(ran).toBe(24);
  });

  it('panels show the loopback targets exactly: verdicts, phases, failure codes, controls, daemon', async () => {
    const panel = (title: string, ref = 'A') => substitute(queryPanels.find((p) => p.title === title)!.targets!.find((t) => t.refId === ref)!.expr);
    // The top row gives the page's answer: loop messaging has one target ok and two blocked (2:
    // degraded, "partly blocked" on the page); the control works, so the network is fine (0).
    expect(byTarget(await vector(prom!.base, panel('Can people call? (per service and path)')), 'vantage', 'service', 'path')).toEqual({ 'grafana-lab/loop/messaging': 2 });
    expect(byTarget(await vector(prom!.base, panel("This vantage's network")), 'vantage')).toEqual({ 'grafana-lab': 0 });
    // The same query with the target variable narrowed, as Grafana sends it: only the open one is ok (1), only the failing ones blocked (3).
    const answer = queryPanels.find((p) => p.title === 'Can people call? (per service and path)')!.targets![0]!.expr;
    const narrowed = async (targets: string) => byTarget(await vector(prom!.base, substitute(answer.replaceAll('$target', targets))), 'service', 'path');
    expect(await narrowed('open')).toEqual({ 'loop/messaging': 1 });
    expect(await narrowed('closed|tampered')).toEqual({ 'loop/messaging': 3 });
    expect(byTarget(await vector(prom!.base, panel('Verdict per target')), 'vantage', 'service', 'target')).toEqual({
      'grafana-lab/control/local': 1, // ok
      'grafana-lab/loop/open': 1, // ok
      'grafana-lab/loop/closed': 3, // blocked: refused while the control's tcp succeeded
      'grafana-lab/loop/tampered': 3, // blocked: a bogon answer while the control's dns succeeded
    });
    expect(byTarget(await vector(prom!.base, panel('Controls succeeding')), 'vantage')).toEqual({ 'grafana-lab': 1 });
    expect(byTarget(await vector(prom!.base, panel('Blocked targets')), 'vantage', 'service')).toEqual({ 'grafana-lab/loop': 2 });
    // Both blocked targets failed while the (foreign) control passed: scope service (1).
    expect(byTarget(await vector(prom!.base, panel('Failure scope per target')), 'vantage', 'service', 'target')).toEqual({
      'grafana-lab/loop/closed': 1,
      'grafana-lab/loop/tampered': 1,
    });
    // loop/tampered's tcp phase was skipped after its dns failed: it has no series.
    expect(byTarget(await vector(prom!.base, panel('Phase success (last run)')), 'id', 'phase')).toEqual({
      'grafana-lab/control/local/dns': 1,
      'grafana-lab/control/local/tcp': 1,
      'grafana-lab/loop/open/tcp': 1,
      'grafana-lab/loop/closed/tcp': 0,
      'grafana-lab/loop/tampered/dns': 0,
    });
    const failures = byTarget(await vector(prom!.base, panel('Failures by code')), 'vantage', 'service', 'phase', 'code');
    expect(Object.keys(failures).sort()).toEqual(['grafana-lab/loop/dns/dns_bogon_error', 'grafana-lab/loop/tcp/connection_refused']);
    for (const increase of Object.values(failures)) expect(increase).toBeGreaterThan(0);
    expect(Object.keys(byTarget(await vector(prom!.base, panel('Phase durations', 'B')), 'service', 'phase')).sort()).toEqual([
      'control/dns',
      'control/tcp',
      'loop/dns',
      'loop/tcp',
    ]);
    const ages = byTarget(await vector(prom!.base, panel('Time since last run')));
    expect(Object.keys(ages).sort()).toEqual(['control/local', 'loop/closed', 'loop/open', 'loop/tampered']);
    for (const age of Object.values(ages)) expect(age).toBeLessThan(20); // probed every 10 s
    expect(Object.keys(byTarget(await vector(prom!.base, panel('Time since last success')))).sort()).toEqual(['control/local', 'loop/open']);
    expect(byTarget(await vector(prom!.base, panel('Records dropped')), 'vantage')).toEqual({ 'grafana-lab': 0 });
    expect(byTarget(await vector(prom!.base, panel('Configuration')), 'vantage')).toEqual({ 'grafana-lab': 1 });
    expect((await vector(prom!.base, panel('Daemons'))).map((s) => s.metric)).toEqual([
      {
        __name__: 'callprobe_build_info',
        // The scrape config's vantage label, and the daemon's own one kept as exported_vantage.
        exported_vantage: 'grafana-lab',
        instance: daemon!.address,
        job: 'callprobe',
        vantage: 'grafana-lab',
        version: VERSION,
      },
    ]);
  });

  it('variables list the live labels', async () => {
    const values = async (name: string) =>
      (await vector(prom!.base, variableQuery(variables.find((v) => v.name === name)!))).map((s) => Object.values(s.metric)[0]).sort();
    expect(await values('vantage')).toEqual(['grafana-lab']);
    expect(await values('service')).toEqual(['control', 'loop']);
    expect(await values('target')).toEqual(['closed', 'local', 'open', 'tampered']);
  });

  it('the shipped rules evaluate on the live metrics: controls fine, two blocked targets, blocking and DNS tampering pending', async () => {
    expect(byTarget(await vector(prom!.base, 'vantage:callprobe_controls_failing:bool'), 'vantage', 'job')).toEqual({ 'grafana-lab/callprobe': 0 });
    expect(byTarget(await vector(prom!.base, 'vantage_service:callprobe_targets_blocked:count'), 'vantage', 'service')).toEqual({ 'grafana-lab/loop': 2 });
    const at = { __name__: 'ALERTS', alertstate: 'pending', instance: daemon!.address, job: 'callprobe', vantage: 'grafana-lab' }; // for: 15m
    const pending = await waitForSeries(prom!.base, 'ALERTS', 2);
    expect(pending.map((s) => s.metric).sort((a, b) => a.alertname!.localeCompare(b.alertname!))).toEqual([
      { ...at, alertname: 'CallprobeDnsTampering', severity: 'warning', service: 'loop', target: 'tampered', phase: 'dns', code: 'dns_bogon_error' },
      { ...at, alertname: 'CallprobeServiceBlocked', severity: 'critical', service: 'loop' },
    ]);
  });

  it('a live scrape of the daemon passes promtool check metrics', async () => {
    const text = await waitUntil(async () => (await fetch(`http://${daemon!.address}/metrics`)).text(), 5000, 'a scrape');
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect({ status: lint.status, stdout: lint.stdout, stderr: lint.stderr }).toEqual({ status: 0, stdout: '', stderr: '' });
  });
});
