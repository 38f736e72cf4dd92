import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ProbeSpec } from '../plan.js';
import type { ProbeResult, Verdict } from '../result.js';
import { VERSION } from '../version.js';

const VERDICTS: readonly Verdict[] = ['ok', 'degraded', 'blocked', 'error'];

/** 1 ms to 30 s: a loopback TCP connect is ~0.1 ms, a blackholed phase times out at 10-30 s. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Prometheus metrics (design.md §9): a run counter plus a failure counter rather than a success
 * label, base units, bounded labels (catalogue names, never raw IPs), series created up front.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly runs = new Counter({
    name: 'callprobe_probe_runs_total',
    help: 'Probe runs finished, per target.',
    labelNames: ['service', 'target'] as const,
    registers: [this.registry],
  });
  private readonly failures = new Counter({
    name: 'callprobe_probe_failures_total',
    help: 'Probe runs that failed, by the phase that failed and the failure code.',
    labelNames: ['service', 'target', 'phase', 'code'] as const,
    registers: [this.registry],
  });
  private readonly phaseSuccess = new Gauge({
    name: 'callprobe_phase_success',
    help: 'Whether the phase succeeded in the last run (1) or not (0); absent until it ran.',
    labelNames: ['service', 'target', 'phase'] as const,
    registers: [this.registry],
  });
  private readonly phaseDuration = new Histogram({
    name: 'callprobe_phase_duration_seconds',
    help: 'Duration of phases that ran (succeeded or failed).',
    labelNames: ['service', 'phase'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  private readonly lastRun = new Gauge({
    name: 'callprobe_probe_last_run_timestamp_seconds',
    help: 'When the last run of the target started (Unix time).',
    labelNames: ['service', 'target'] as const,
    registers: [this.registry],
  });
  private readonly lastSuccess = new Gauge({
    name: 'callprobe_probe_last_success_timestamp_seconds',
    help: 'When the last fully successful run of the target started (Unix time).',
    labelNames: ['service', 'target'] as const,
    registers: [this.registry],
  });
  private readonly verdict = new Gauge({
    name: 'callprobe_probe_verdict',
    help: 'The verdict of the last run: 1 for the current verdict, 0 for the others.',
    labelNames: ['service', 'target', 'verdict'] as const,
    registers: [this.registry],
  });
  private readonly overlaps = new Counter({
    name: 'callprobe_probe_overlaps_total',
    help: 'Scheduled runs skipped because the previous run of the same target was still going.',
    labelNames: ['service', 'target'] as const,
    registers: [this.registry],
  });
  readonly recordsDropped = new Counter({
    name: 'callprobe_records_dropped_total',
    help: 'Results not written to the records because the write queue was full or the disk failed.',
    registers: [this.registry],
  });
  readonly configReloadOk = new Gauge({
    name: 'callprobe_config_last_reload_successful',
    help: 'Whether the last configuration load or reload succeeded (1) or not (0).',
    registers: [this.registry],
  });
  readonly configReloadTime = new Gauge({
    name: 'callprobe_config_last_reload_success_timestamp_seconds',
    help: 'When the configuration was last loaded successfully (Unix time).',
    registers: [this.registry],
  });

  constructor(vantage: string) {
    new Gauge({
      name: 'callprobe_build_info',
      help: 'Always 1; the labels say which callprobe runs where.',
      labelNames: ['version', 'vantage'] as const,
      registers: [this.registry],
    })
      .labels(VERSION, vantage)
      .set(1);
    collectDefaultMetrics({ register: this.registry });
    // prom-client exports these gauges with a `_total` suffix, which `promtool check metrics`
    // flags (only counters end in _total); the rest of the process metrics stay.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
  }

  /** Creates the series a plan will have, at zero, so a target that never ran is visible. */
  declare(specs: readonly ProbeSpec[]): void {
    for (const s of specs) {
      this.runs.labels(s.service, s.target).inc(0);
      this.overlaps.labels(s.service, s.target).inc(0);
      for (const v of VERDICTS) this.verdict.labels(s.service, s.target, v).set(0);
    }
    this.recordsDropped.inc(0);
  }

  observe(result: ProbeResult): void {
    const { service, target } = result;
    const started = Date.parse(result.startedAt) / 1000;
    this.runs.labels(service, target).inc();
    this.lastRun.labels(service, target).set(started);
    if (result.failure === null) this.lastSuccess.labels(service, target).set(started);
    else this.failures.labels(service, target, result.failedPhase ?? 'none', result.failure).inc();
    for (const p of result.phases) {
      if (p.skipped) continue;
      this.phaseSuccess.labels(service, target, p.phase).set(p.ok ? 1 : 0);
      this.phaseDuration.labels(service, p.phase).observe(p.durationMs / 1000);
    }
    for (const v of VERDICTS) this.verdict.labels(service, target, v).set(v === result.verdict ? 1 : 0);
  }

  overlap(spec: ProbeSpec): void {
    this.overlaps.labels(spec.service, spec.target).inc();
  }
}
