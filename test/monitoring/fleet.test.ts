import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROMETHEUS_DIR, byTarget, loadYaml, query, startDaemon, startPrometheus, vector, waitForSeries, type Daemon, type Prometheus } from './stack.js';

/**
 * docs/architecture.md#fleet with the shipped configs: a vantage's daemon scraped by a Prometheus in agent mode
 * (Debian's 2.42: `--enable-feature=agent`) that remote_writes to a central Prometheus started
 * with `--web.enable-remote-write-receiver`, where the rules run across the fleet.
 */
describe('fleet: an agent-mode Prometheus remote_writes a vantage to the central store', () => {
  let dir: string;
  let daemon: Daemon | undefined;
  let central: Prometheus | undefined;
  let agent: Prometheus | undefined;
  const agentConfig = loadYaml(join(PROMETHEUS_DIR, 'agent.example.yml'));
  const centralConfig = loadYaml(join(PROMETHEUS_DIR, 'central.example.yml'));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-fleet-'));
    daemon = await startDaemon(join(dir, 'daemon'), 'fleet-a');

    const centralRun = structuredClone(centralConfig);
    centralRun.global.evaluation_interval = '1s';
    centralRun.rule_files = [join(PROMETHEUS_DIR, 'callprobe.rules.yml')];
    delete centralRun.alerting; // no Alertmanager here
    central = await startPrometheus(join(dir, 'central'), centralRun, ['--web.enable-remote-write-receiver']);

    const agentRun = structuredClone(agentConfig);
    agentRun.global.scrape_interval = '1s';
    agentRun.global.external_labels.vantage = 'fleet-a'; // the daemon's vantage.name, as the comment asks
    agentRun.scrape_configs[0].static_configs[0].targets = [daemon.address];
    agentRun.remote_write[0].url = `${central.base}/api/v1/write`;
    // Default batch deadline is 5 s; one second keeps the test short.
    agentRun.remote_write[0].queue_config = { batch_send_deadline: '1s' };
    agent = await startPrometheus(join(dir, 'agent'), agentRun, ['--enable-feature=agent']);
  });
  afterAll(async () => {
    await agent?.stop();
    await central?.stop();
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the shipped agent config labels its vantage and writes to a remote-write endpoint', () => {
    expect(agentConfig.global.external_labels).toEqual({ vantage: 'my-vps-1', vantage_asn: '12389', vantage_country: 'RU' });
    expect(agentConfig.scrape_configs).toEqual([{ job_name: 'callprobe', static_configs: [{ targets: ['127.0.0.1:9465'] }] }]);
    expect(agentConfig.remote_write).toEqual([{ url: 'https://metrics.example.org/api/v1/write' }]);
    expect(agentConfig.rule_files).toBeUndefined(); // an agent evaluates no rules
    expect(centralConfig.rule_files).toEqual(['callprobe.rules.yml']);
  });

  it('the agent really is an agent: it keeps no queryable store', async () => {
    const answer = await query(agent!.base, 'up');
    expect({ httpStatus: answer.httpStatus, status: answer.status, error: answer.error }).toEqual({
      httpStatus: 422,
      status: 'error',
      error: 'unavailable with Prometheus Agent',
    });
  });

  it('the central store has every callprobe series of the vantage, with the external labels', async () => {
    const runs = await waitForSeries(central!.base, 'callprobe_probe_runs_total', 4);
    expect(runs.map((s) => s.metric).sort((a, b) => a.target!.localeCompare(b.target!))).toEqual(
      [
        ['loop', 'closed'],
        ['control', 'local'],
        ['loop', 'open'],
        ['loop', 'tampered'],
      ].map(([service, target]) => ({
        __name__: 'callprobe_probe_runs_total',
        service,
        target,
        job: 'callprobe',
        instance: daemon!.address,
        vantage: 'fleet-a',
        vantage_asn: '12389',
        vantage_country: 'RU',
      })),
    );
    // No callprobe series arrives without its vantage.
    expect(await vector(central!.base, '{__name__=~"callprobe_.+", vantage!="fleet-a"}')).toEqual([]);
    const failures = await waitForSeries(central!.base, 'callprobe_probe_failures_total', 2);
    expect(Object.keys(byTarget(failures, 'vantage', 'service', 'target', 'phase', 'code')).sort()).toEqual([
      'fleet-a/loop/closed/tcp/connection_refused',
      'fleet-a/loop/tampered/dns/dns_bogon_error',
    ]);
    // The daemon's own vantage label on callprobe_build_info wins over the external one (they agree).
    expect((await vector(central!.base, 'callprobe_build_info')).map((s) => s.metric.vantage)).toEqual(['fleet-a']);
  });

  it('the rules run in the central store per vantage: controls fine, loop blocked, the alerts pending', async () => {
    const controls = await waitForSeries(central!.base, 'vantage:callprobe_controls_failing:bool');
    expect(byTarget(controls, 'vantage', 'instance')).toEqual({ [`fleet-a/${daemon!.address}`]: 0 });
    // Targets first run up to 12 s after start (probed every 10 s): wait for both blocked ones.
    const blocked = await waitForSeries(central!.base, 'vantage_service:callprobe_targets_blocked:count >= 2');
    expect(byTarget(blocked, 'vantage', 'service')).toEqual({ 'fleet-a/loop': 2 });
    const alerts = await waitForSeries(central!.base, 'ALERTS', 2);
    expect(alerts.map((s) => [s.metric.alertname, s.metric.alertstate, s.metric.vantage, s.metric.vantage_country, s.metric.target]).sort()).toEqual([
      ['CallprobeDnsTampering', 'pending', 'fleet-a', 'RU', 'tampered'],
      // Aggregated by (vantage, job, instance, service): `vantage` is the identity that survives.
      ['CallprobeServiceBlocked', 'pending', 'fleet-a', undefined, undefined],
    ]);
  });
});
