import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PHASES } from '../phases/index.js';
import type { PhaseRegistry } from '../phases/types.js';
import { DIAGNOSES } from '../media/diagnosis.js';
import type { PhaseGauge, PhaseState, ProbeSpec } from '../types.js';
import type { PhaseResult, ProbeResult, Verdict, VerdictScope } from '../result.js';
import { VERSION } from '../version.js';

const VERDICTS: readonly Verdict[] = ['ok', 'degraded', 'blocked', 'error'];
const SCOPES: readonly VerdictScope[] = ['service', 'foreign', 'network'];

/** 1 ms to 30 s: a loopback TCP connect is ~0.1 ms, a blackholed phase times out at 10-30 s. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Prometheus metrics (docs/architecture.md#metrics): a run counter plus a failure counter rather than a success
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
  private readonly scope = new Gauge({
    name: 'callprobe_probe_scope',
    help: 'How far the failure of the last run reaches: 1 for its scope (service: only this service; foreign: everything foreign fails while domestic controls pass, an allowlist; network: the controls fail too), 0 for the others; all 0 when it did not fail or the controls cannot say.',
    labelNames: ['service', 'target', 'scope'] as const,
    registers: [this.registry],
  });
  private readonly overlaps = new Counter({
    name: 'callprobe_probe_overlaps_total',
    help: 'Scheduled runs skipped because the previous run of the same target was still going.',
    labelNames: ['service', 'target'] as const,
    registers: [this.registry],
  });
  private readonly mediaLoss = new Gauge({
    name: 'callprobe_media_loss_ratio',
    help: 'Media stream packets lost in the last run (0-1), by shape; absent until a media phase ran.',
    labelNames: ['service', 'target', 'shape'] as const,
    registers: [this.registry],
  });
  private readonly mediaJitter = new Gauge({
    name: 'callprobe_media_jitter_seconds',
    help: 'RFC 3550 interarrival jitter of the echoed media stream in the last run, by shape.',
    labelNames: ['service', 'target', 'shape'] as const,
    registers: [this.registry],
  });
  private readonly mediaMos = new Gauge({
    name: 'callprobe_media_mos',
    help: 'E-model (ITU-T G.107) MOS estimate of the media stream in the last run, by shape; absent when nothing came back.',
    labelNames: ['service', 'target', 'shape'] as const,
    registers: [this.registry],
  });
  private readonly cutoffPackets = new Gauge({
    name: 'callprobe_stream_cutoff_packets',
    help: 'Packets sent up to the last one echoed before a media stream went silent (stream_cutoff) in the last run; 0 when it did not.',
    labelNames: ['service', 'target', 'shape'] as const,
    registers: [this.registry],
  });
  private readonly cutoffBytes = new Gauge({
    name: 'callprobe_stream_cutoff_bytes',
    help: 'Bytes that got through before a stream was cut off in the last run (media: sent up to the last echo; stream: received, shape tcp or tls); 0 when it was not.',
    labelNames: ['service', 'target', 'shape'] as const,
    registers: [this.registry],
  });
  private readonly mediaDiagnosis = new Gauge({
    name: 'callprobe_media_diagnosis',
    help: 'What the last multi-destination media run says of the call path (1 for it, 0 for the others): protocol_classification (a shape fails on the foreign and the domestic path while its control passes), destination_policy (everything to the foreign reflector fails, everything domestic passes), none, inconclusive.',
    labelNames: ['service', 'target', 'diagnosis'] as const,
    registers: [this.registry],
  });
  private readonly loopDelay = new Histogram({
    name: 'callprobe_run_event_loop_delay_seconds',
    help: "The worst event-loop delay seen during each run: callprobe's own stall, which inflates the timings it records.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  private readonly unreliableTiming = new Counter({
    name: 'callprobe_probe_unreliable_timing_total',
    help: 'Runs whose timings are flagged unreliable: the event loop stalled more than 50 ms while they ran.',
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

  /**
   * What each planned target stands for, to group targets in PromQL without adding labels to the
   * other metrics: `* on(vantage, service, target) group_left(path) callprobe_target_info`.
   */
  private readonly targetInfo = new Gauge({
    name: 'callprobe_target_info',
    help: 'Always 1 for each planned target; the labels say what of a call it stands for (path), where it is (location) and whether it is a control.',
    labelNames: ['service', 'target', 'path', 'location', 'control'] as const,
    registers: [this.registry],
  });

  private readonly buildInfo = new Gauge({
    name: 'callprobe_build_info',
    help: 'Always 1; the labels say which callprobe runs where.',
    labelNames: ['version', 'vantage'] as const,
    registers: [this.registry],
  });

  /** The (service, target) pairs of the plan, and those a reload dropped. */
  private declared = new Set<string>();
  private readonly forgotten = new Set<string>();

  /** Every metric with a `target` label: what a dropped target leaves behind. */
  private get perTarget(): Array<Counter<string> | Gauge<string>> {
    return [
      this.runs,
      this.failures,
      this.phaseSuccess,
      this.lastRun,
      this.lastSuccess,
      this.verdict,
      this.scope,
      this.overlaps,
      this.unreliableTiming,
      this.mediaLoss,
      this.mediaJitter,
      this.mediaMos,
      this.cutoffPackets,
      this.cutoffBytes,
      this.mediaDiagnosis,
    ] as Array<Counter<string> | Gauge<string>>;
  }

  /** The phase-fed gauges by name: the metric is declared here, what goes in is the phase's. */
  private readonly gauges: Record<PhaseGauge, Gauge<'service' | 'target' | 'shape'>> = {
    media_loss_ratio: this.mediaLoss,
    media_jitter_seconds: this.mediaJitter,
    media_mos: this.mediaMos,
    stream_cutoff_packets: this.cutoffPackets,
    stream_cutoff_bytes: this.cutoffBytes,
  };

  /** The phase-fed states by name, with every value they can take. */
  private readonly states: Record<PhaseState, [Gauge<'service' | 'target' | 'diagnosis'>, readonly string[]]> = {
    media_diagnosis: [this.mediaDiagnosis, DIAGNOSES],
  };

  /** @param phases where each phase's gauges are looked up (the plan's registry). */
  constructor(
    vantage: string,
    private readonly phases: PhaseRegistry = PHASES,
  ) {
    this.setVantage(vantage);
    collectDefaultMetrics({ register: this.registry });
    // prom-client exports these gauges with a `_total` suffix, which `promtool check metrics`
    // flags (only counters end in _total); the rest of the process metrics stay.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
  }

  /** The vantage's name on callprobe_build_info (a reload may rename it). */
  setVantage(name: string): void {
    this.buildInfo.reset();
    this.buildInfo.labels(VERSION, name).set(1);
  }

  /** Creates the series a plan will have, at zero, so a target that never ran is visible. */
  declare(specs: readonly ProbeSpec[]): void {
    const planned = new Set(specs.map((s) => seriesKey(s.service, s.target)));
    // Targets a reload dropped: their series go, or `callprobe_probe_verdict{verdict="blocked"}` of
    // a target nobody probes any more would keep an alert firing forever.
    for (const key of this.declared) if (!planned.has(key)) this.forget(key);
    const before = this.declared;
    this.declared = planned;
    for (const key of planned) this.forgotten.delete(key);
    for (const s of specs) {
      this.runs.labels(s.service, s.target).inc(0);
      this.overlaps.labels(s.service, s.target).inc(0);
      this.unreliableTiming.labels(s.service, s.target).inc(0);
      // A target kept across a reload keeps its current verdict; only a new one starts at zero.
      if (!before.has(seriesKey(s.service, s.target))) {
        for (const v of VERDICTS) this.verdict.labels(s.service, s.target, v).set(0);
        for (const v of SCOPES) this.scope.labels(s.service, s.target, v).set(0);
      }
    }
    // Rebuilt whole: a reload that changes a target's path or location leaves no stale series.
    this.targetInfo.reset();
    for (const s of specs) this.targetInfo.labels(s.service, s.target, s.path, s.location, String(s.control)).set(1);
    this.recordsDropped.inc(0);
  }

  observe(result: ProbeResult): void {
    const { service, target } = result;
    // A run of a dropped target that was still in flight at the reload must not bring its series back.
    if (this.forgotten.has(seriesKey(service, target))) return;
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
    for (const v of SCOPES) this.scope.labels(service, target, v).set(v === result.scope ? 1 : 0);
    if (result.timing) {
      this.loopDelay.observe(result.timing.eventLoopDelayMaxMs / 1000);
      if (!result.timing.reliable) this.unreliableTiming.labels(service, target).inc();
    }
    for (const p of result.phases) if (!p.skipped) this.observeGauges(service, target, p);
  }

  /** The per-target states each phase says it feeds (its definition's `states`): 1 for the value, 0 for the others. */
  private observeStates(service: string, target: string, p: PhaseResult): void {
    for (const sample of this.phases.get(p.phase)?.states?.(p) ?? []) {
      const [gauge, values] = this.states[sample.state];
      for (const v of values) {
        if (sample.value === null) gauge.remove(service, target, v);
        else gauge.labels(service, target, v).set(v === sample.value ? 1 : 0);
      }
    }
  }

  /** The per-stream gauges each phase says it feeds (its definition's `gauges`); a null value removes the series. */
  private observeGauges(service: string, target: string, p: PhaseResult): void {
    for (const sample of this.phases.get(p.phase)?.gauges?.(p) ?? []) {
      const gauge = this.gauges[sample.gauge];
      if (sample.value === null) gauge.remove(service, target, sample.shape);
      else gauge.labels(service, target, sample.shape).set(sample.value);
    }
    this.observeStates(service, target, p);
  }

  /** Removes every series of one target, whatever its other labels (phase, code, shape, verdict). */
  private forget(key: string): void {
    this.forgotten.add(key);
    const [service, target] = key.split('\0') as [string, string];
    for (const metric of this.perTarget) {
      void metric.get().then((m) => {
        for (const v of m.values) if (v.labels.service === service && v.labels.target === target) metric.remove(v.labels as never);
      });
    }
  }

  overlap(spec: ProbeSpec): void {
    this.overlaps.labels(spec.service, spec.target).inc();
  }
}

function seriesKey(service: string, target: string): string {
  return `${service}\0${target}`;
}
