import type { PhaseRegistry } from '../phases/types.js';
import type { ProbeResult, Verdict } from '../result.js';
import type { TargetLocation, TargetPath } from '../types.js';
import { noVerdicts, type VerdictCounts } from '../sinks/answer.js';
import { PeriodTracker, type Period } from '../sinks/periods.js';

/**
 * What `callprobe report` says of each target, from its records: the verdict as periods ("blocked
 * since ..., 212 runs"), how often each phase failed with which code, the median duration of each
 * phase that worked, and where streams were cut off (the N of `stream_cutoff`).
 */
export interface TargetReport {
  service: string;
  target: string;
  path: TargetPath;
  location: TargetLocation;
  runs: number;
  verdicts: VerdictCounts;
  periods: Period[];
  failures: Array<{ phase: string; code: string; runs: number }>;
  /** Median duration of each phase over the runs where it succeeded, ms to 0.1, in the order phases ran. */
  medianMs: Array<{ phase: string; ms: number; runs: number }>;
  /** Cut-off positions seen, from the phases' own cut-off gauges: media after N packets, streams after N bytes. */
  cutoffs: Array<{ what: 'packets' | 'bytes'; shape: string; value: number; runs: number }>;
}

export interface Report {
  vantages: string[];
  /** The first and last run's start (ISO 8601), null without runs. */
  from: string | null;
  to: string | null;
  runs: number;
  targets: TargetReport[];
}

interface Building {
  report: TargetReport;
  /** Every run's start and verdict: periods need them in time order, records come in file order. */
  runs: Array<{ startedAt: string; verdict: Verdict }>;
  latestAt: string;
  durations: Map<string, number[]>;
  failures: Map<string, number>;
  cutoffs: Map<string, number>;
}

/**
 * Results in any order in, the report out. Keeps only brief figures per run (its start, verdict
 * and phase durations), so a week of records is read without holding them.
 */
export class ReportBuilder {
  private readonly targets = new Map<string, Building>();
  private readonly vantages = new Set<string>();
  private runs = 0;
  private from: string | null = null;
  private to: string | null = null;

  constructor(private readonly phases: PhaseRegistry) {}

  add(r: ProbeResult): void {
    this.runs++;
    this.vantages.add(r.vantage.name);
    if (this.from === null || r.startedAt < this.from) this.from = r.startedAt;
    if (this.to === null || r.startedAt > this.to) this.to = r.startedAt;
    const id = `${r.service}/${r.target}`;
    let b = this.targets.get(id);
    if (!b) {
      b = {
        report: { service: r.service, target: r.target, path: r.path, location: r.location, runs: 0, verdicts: noVerdicts(), periods: [], failures: [], medianMs: [], cutoffs: [] },
        runs: [],
        latestAt: r.startedAt,
        durations: new Map(),
        failures: new Map(),
        cutoffs: new Map(),
      };
      this.targets.set(id, b);
    }
    observe(b, r, this.phases);
  }

  finish(): Report {
    return {
      vantages: [...this.vantages].sort(),
      from: this.from,
      to: this.to,
      runs: this.runs,
      targets: [...this.targets.values()].map(finish).sort((a, b) => a.service.localeCompare(b.service) || a.target.localeCompare(b.target)),
    };
  }
}

/** The report of these results. */
export function buildReport(results: Iterable<ProbeResult>, phases: PhaseRegistry): Report {
  const builder = new ReportBuilder(phases);
  for (const r of results) builder.add(r);
  return builder.finish();
}

function observe(b: Building, r: ProbeResult, phases: PhaseRegistry): void {
  b.report.runs++;
  b.report.verdicts[r.verdict]++;
  // The latest record says what the target is now (a reload may have changed its path).
  if (r.startedAt >= b.latestAt) {
    b.latestAt = r.startedAt;
    b.report.path = r.path;
    b.report.location = r.location;
  }
  b.runs.push({ startedAt: r.startedAt, verdict: r.verdict });
  if (r.failure !== null) {
    const key = `${r.failedPhase ?? 'none'}\0${r.failure}`;
    b.failures.set(key, (b.failures.get(key) ?? 0) + 1);
  }
  for (const p of r.phases) {
    if (p.skipped) continue;
    if (p.ok) b.durations.set(p.phase, [...(b.durations.get(p.phase) ?? []), p.durationMs]);
    for (const s of phases.get(p.phase)?.gauges?.(p) ?? []) {
      if (s.value === null || s.value <= 0 || (s.gauge !== 'stream_cutoff_packets' && s.gauge !== 'stream_cutoff_bytes')) continue;
      const key = `${s.gauge === 'stream_cutoff_packets' ? 'packets' : 'bytes'}\0${s.shape}\0${s.value}`;
      b.cutoffs.set(key, (b.cutoffs.get(key) ?? 0) + 1);
    }
  }
}

function finish(b: Building): TargetReport {
  const r = b.report;
  const periods = new PeriodTracker();
  for (const run of b.runs.sort((x, y) => x.startedAt.localeCompare(y.startedAt))) periods.add(run.verdict, run.startedAt);
  r.periods = [...periods.periods];
  r.failures = [...b.failures.entries()]
    .map(([key, runs]) => {
      const [phase, code] = key.split('\0') as [string, string];
      return { phase, code, runs };
    })
    .sort((x, y) => y.runs - x.runs || x.phase.localeCompare(y.phase) || x.code.localeCompare(y.code));
  r.medianMs = [...b.durations.entries()].map(([phase, ms]) => ({ phase, ms: Math.round(median(ms) * 10) / 10, runs: ms.length }));
  r.cutoffs = [...b.cutoffs.entries()]
    .map(([key, runs]) => {
      const [what, shape, value] = key.split('\0') as ['packets' | 'bytes', string, string];
      return { what, shape, value: Number(value), runs };
    })
    .sort((x, y) => x.what.localeCompare(y.what) || x.shape.localeCompare(y.shape) || y.runs - x.runs || x.value - y.value);
  return r;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
