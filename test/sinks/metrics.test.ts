import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/sinks/metrics.js';
import { result } from '../helpers/results.js';
import { specFor } from '../helpers/spec.js';

describe('Prometheus metrics', () => {
  it('creates the series of the plan up front, at zero', async () => {
    const m = new Metrics('lab');
    m.declare([specFor({ endpoint: { host: '198.18.2.2', port: 443 }, phases: ['tcp'], service: 'telegram', target: 'dc2' })]);
    const text = await m.registry.metrics();
    expect(text).toContain('callprobe_probe_runs_total{service="telegram",target="dc2"} 0');
    expect(text).toContain('callprobe_probe_verdict{service="telegram",target="dc2",verdict="blocked"} 0');
    expect(text).toContain('callprobe_records_dropped_total 0');
    expect(text).toMatch(/callprobe_build_info\{version="[^"]+",vantage="lab"\} 1/);
  });

  it('counts runs and failures with bounded labels and exact values', async () => {
    const m = new Metrics('lab');
    m.observe(result());
    m.observe(
      result({ verdict: 'blocked', failure: 'connection_reset', failedPhase: 'tls', startedAt: '2026-11-22T10:05:00.000Z' }, [
        { phase: 'tcp', endpoint: '198.18.2.2:443', startedAt: 0, durationMs: 2, ok: true, failure: null, evidence: {} },
        { phase: 'tls', endpoint: '198.18.2.2:443', startedAt: 2, durationMs: 40, ok: false, failure: 'connection_reset', evidence: {} },
        { phase: 'websocket', endpoint: '198.18.2.2:443', startedAt: 0, durationMs: 0, ok: false, failure: null, skipped: true, evidence: {} },
      ]),
    );
    const text = await m.registry.metrics();
    expect(text).toContain('callprobe_probe_runs_total{service="telegram",target="dc2"} 2');
    expect(text).toContain('callprobe_probe_failures_total{service="telegram",target="dc2",phase="tls",code="connection_reset"} 1');
    expect(text).toContain('callprobe_phase_success{service="telegram",target="dc2",phase="tls"} 0');
    expect(text).toContain('callprobe_phase_success{service="telegram",target="dc2",phase="tcp"} 1');
    expect(text).not.toContain('phase="websocket"');
    expect(text).toContain('callprobe_phase_duration_seconds_bucket{le="0.05",service="telegram",phase="tls"} 1');
    expect(text).toContain('callprobe_phase_duration_seconds_count{service="telegram",phase="tcp"} 2');
    expect(text).toContain('callprobe_probe_last_run_timestamp_seconds{service="telegram",target="dc2"} 1795341900');
    expect(text).toContain('callprobe_probe_last_success_timestamp_seconds{service="telegram",target="dc2"} 1795341600');
    expect(text).toContain('callprobe_probe_verdict{service="telegram",target="dc2",verdict="blocked"} 1');
    expect(text).toContain('callprobe_probe_verdict{service="telegram",target="dc2",verdict="ok"} 0');
  });

  it('counts runs whose own timing was unreliable, and the worst event-loop delay per run', async () => {
    const m = new Metrics('lab');
    m.declare([specFor({ endpoint: { host: '198.18.2.2', port: 443 }, phases: ['tcp'], service: 'telegram', target: 'dc2' })]);
    m.observe(result({ timing: { eventLoopDelayMaxMs: 12, reliable: true } }));
    m.observe(result({ timing: { eventLoopDelayMaxMs: 424, reliable: false } }));
    const text = await m.registry.metrics();
    expect(text).toContain('callprobe_probe_unreliable_timing_total{service="telegram",target="dc2"} 1');
    expect(text).toContain('callprobe_run_event_loop_delay_seconds_bucket{le="0.025"} 1');
    expect(text).toContain('callprobe_run_event_loop_delay_seconds_bucket{le="0.5"} 2');
    expect(text).toContain('callprobe_run_event_loop_delay_seconds_count 2');
  });

  it('a reload that drops a target removes all its series, and a late result of it does not bring them back', async () => {
    const m = new Metrics('lab');
    const dc2 = specFor({ endpoint: { host: '198.18.2.2', port: 443 }, phases: ['tcp'], service: 'telegram', target: 'dc2' });
    const dc4 = specFor({ endpoint: { host: '198.18.2.4', port: 443 }, phases: ['tcp'], service: 'telegram', target: 'dc4' });
    m.declare([dc2, dc4]);
    const blocked = (target: string) =>
      result({ target, verdict: 'blocked', failure: 'generic_timeout_error', failedPhase: 'tcp' }, [
        { phase: 'tcp', endpoint: '198.18.2.4:443', startedAt: 0, durationMs: 10, ok: false, failure: 'generic_timeout_error', evidence: {} },
      ]);
    m.observe(blocked('dc2'));
    m.observe(blocked('dc4'));
    expect(await m.registry.metrics()).toContain('callprobe_probe_verdict{service="telegram",target="dc4",verdict="blocked"} 1');
    m.declare([dc2]);
    await new Promise((r) => setImmediate(r));
    m.observe(blocked('dc4')); // a run that was in flight at the reload
    const text = await m.registry.metrics();
    expect(text).not.toContain('target="dc4"');
    expect(text).toContain('callprobe_probe_verdict{service="telegram",target="dc2",verdict="blocked"} 1');
    expect(text).toContain('callprobe_probe_failures_total{service="telegram",target="dc2",phase="tcp",code="generic_timeout_error"} 1');
  });

  it('passes promtool check metrics without a lint problem', async () => {
    const m = new Metrics('lab');
    m.declare([specFor({ endpoint: { host: '198.18.2.2', port: 443 }, phases: ['tcp'], service: 'telegram', target: 'dc2' })]);
    m.observe(result());
    const text = await m.registry.metrics();
    const out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(out).toBe('');
  });
});
