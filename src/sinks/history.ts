import type { ProbeResult, Verdict } from '../result.js';
import { VERDICTS, noVerdicts, type VerdictCounts } from './answer.js';
import { PeriodTracker, type Period } from './periods.js';
import { scanRecords } from './records.js';

/** A timeline's resolution: 5-minute buckets for the last 24 h, 1-hour buckets for the last 7 days. */
export interface TimelineWindow {
  readonly name: 'day' | 'week';
  readonly bucketMs: number;
  readonly buckets: number;
}

export const WINDOWS: readonly TimelineWindow[] = [
  { name: 'day', bucketMs: 5 * 60_000, buckets: 288 },
  { name: 'week', bucketMs: 3_600_000, buckets: 168 },
];

const LONGEST_MS = Math.max(...WINDOWS.map((w) => w.bucketMs * w.buckets));
const VERDICT_INDEX: Readonly<Record<Verdict, number>> = { ok: 0, degraded: 1, blocked: 2, error: 3 };
/**
 * Kept per target for the detail view and /api/status, so memory stays bounded: periods, short
 * points (verdict and failure) and whole results (a media result's evidence runs to kilobytes).
 */
const PERIODS_KEPT = 50;
const POINTS_KEPT = 48;
const RECENT_KEPT = 5;

/** One run, briefly: the previous runs of a target. */
export interface HistoryPoint {
  startedAt: string;
  verdict: Verdict;
  failure: string | null;
  failedPhase: string | null;
  durationMs: number;
}

function pointOf(r: ProbeResult): HistoryPoint {
  return { startedAt: r.startedAt, verdict: r.verdict, failure: r.failure, failedPhase: r.failedPhase, durationMs: r.durationMs };
}

function keepLast<T>(list: T[], n: number): void {
  if (list.length > n) list.splice(0, list.length - n);
}

/** Verdict counts per time bucket, in a ring: a slot holds the bucket whose number it remembers. */
class Buckets {
  private readonly counts: Uint32Array;
  private readonly slots: Float64Array;

  constructor(private readonly w: TimelineWindow) {
    this.counts = new Uint32Array(w.buckets * 4);
    this.slots = new Float64Array(w.buckets).fill(-1);
  }

  add(atMs: number, verdict: Verdict): void {
    const n = Math.floor(atMs / this.w.bucketMs);
    const i = n % this.w.buckets;
    if (this.slots[i] !== n) {
      if (this.slots[i]! > n) return; // older than the window the slot already holds
      this.slots[i] = n;
      this.counts.fill(0, i * 4, i * 4 + 4);
    }
    this.counts[i * 4 + VERDICT_INDEX[verdict]]!++;
  }

  /** Adds the counts of the window ending with the bucket of `nowMs` to `into` (oldest bucket first, 4 per bucket). */
  addInto(into: Uint32Array, nowMs: number): void {
    const last = Math.floor(nowMs / this.w.bucketMs);
    for (let k = 0; k < this.w.buckets; k++) {
      const n = last - this.w.buckets + 1 + k;
      const i = n % this.w.buckets;
      if (this.slots[i] !== n) continue;
      for (let j = 0; j < 4; j++) into[k * 4 + j]! += this.counts[i * 4 + j]!;
    }
  }
}

/** What the history knows of one target: its buckets, its periods and its last few results. */
class TargetHistory {
  readonly buckets = WINDOWS.map((w) => new Buckets(w));
  readonly periods = new PeriodTracker(PERIODS_KEPT);
  readonly points: HistoryPoint[] = [];
  recent: ProbeResult[] = [];

  add(point: HistoryPoint, whole: ProbeResult | null): void {
    for (const b of this.buckets) b.add(Date.parse(point.startedAt), point.verdict);
    this.periods.add(point.verdict, point.startedAt);
    this.points.push(point);
    keepLast(this.points, POINTS_KEPT);
    if (whole) {
      this.recent.push(whole);
      keepLast(this.recent, RECENT_KEPT);
    }
  }
}

/** A timeline of one or more targets: verdict counts per bucket, oldest first. */
export interface Timeline {
  window: TimelineWindow['name'];
  /** Start of the first bucket (Unix ms). */
  startMs: number;
  bucketMs: number;
  counts: VerdictCounts[];
}

export interface TargetRecord {
  latest: ProbeResult | null;
  /** When the latest verdict began (errors in between folded in). */
  since: string | null;
  periods: readonly Period[];
  /** The last few results whole, newest last. */
  recent: readonly ProbeResult[];
  /** The last runs in brief, newest last. */
  points: readonly HistoryPoint[];
}

export interface LoadSummary {
  records: number;
  bytes: number;
  ms: number;
}

/**
 * Per-target history for the status page: verdict counts in 5-minute and 1-hour buckets, the
 * periods of one verdict ("blocked since"), and the last few results. Built from the records at
 * startup (so it survives restarts) and kept up to date from live results. Results that arrive
 * while the records are read wait, then follow the loaded ones in order.
 */
export class History {
  private targets = new Map<string, TargetHistory>();
  private pending: ProbeResult[] | null = null;

  /** Only the planned targets are kept (a reload that drops a target drops its history). */
  declare(ids: Iterable<string>): void {
    const keep = new Set(ids);
    for (const id of this.targets.keys()) if (!keep.has(id)) this.targets.delete(id);
    for (const id of keep) if (!this.targets.has(id)) this.targets.set(id, new TargetHistory());
  }

  observe(result: ProbeResult): void {
    if (this.pending) this.pending.push(result);
    else this.targets.get(idOf(result))?.add(pointOf(result), result);
  }

  /**
   * Reads the records of the longest window, newest first, asynchronously (64 KiB at a time: the
   * probes and the HTTP server run between chunks), then replays them in time order. `show` is
   * applied to the few results kept whole (records from before privacy was on are scrubbed too).
   */
  async load(dir: string, show: (r: ProbeResult) => ProbeResult, now = Date.now()): Promise<LoadSummary> {
    const started = performance.now();
    this.pending = [];
    const runs = new Map<string, Array<{ at: number; point: HistoryPoint; whole: ProbeResult | null }>>();
    let records = 0;
    let bytes = 0;
    try {
      bytes = await scanRecords(dir, new Date(now - LONGEST_MS), (r) => {
        const id = idOf(r);
        if (!this.targets.has(id) || !VERDICTS.includes(r.verdict)) return;
        const list = runs.get(id) ?? [];
        if (list.length === 0) runs.set(id, list);
        // Newest first: only the first few of each target are kept whole.
        list.push({ at: Date.parse(r.startedAt), point: pointOf(r), whole: list.length < RECENT_KEPT ? show(r) : null });
        records++;
      });
    } finally {
      const live = this.pending;
      this.pending = null;
      const seen = new Set(live.map((r) => r.id));
      for (const [id, list] of runs) {
        const t = new TargetHistory();
        list.sort((a, b) => a.at - b.at);
        for (const run of list) {
          if (run.whole && seen.has(run.whole.id)) continue;
          t.add(run.point, run.whole);
        }
        if (this.targets.has(id)) this.targets.set(id, t);
      }
      for (const r of live) this.observe(r);
    }
    return { records, bytes, ms: Math.round(performance.now() - started) };
  }

  target(id: string): TargetRecord | null {
    const t = this.targets.get(id);
    if (!t) return null;
    const latest = t.recent.at(-1) ?? null;
    return { latest, since: latest ? t.periods.sinceFor(latest.verdict) : null, periods: t.periods.periods, recent: t.recent, points: t.points };
  }

  /** The summed timeline of these targets over one window ending now. */
  timeline(ids: readonly string[], window: TimelineWindow, now = Date.now()): Timeline {
    const index = WINDOWS.indexOf(window);
    const sum = new Uint32Array(window.buckets * 4);
    for (const id of ids) this.targets.get(id)?.buckets[index]!.addInto(sum, now);
    const counts: VerdictCounts[] = [];
    for (let k = 0; k < window.buckets; k++) {
      const c = noVerdicts();
      for (const v of VERDICTS) c[v] = sum[k * 4 + VERDICT_INDEX[v]]!;
      counts.push(c);
    }
    const startMs = (Math.floor(now / window.bucketMs) - window.buckets + 1) * window.bucketMs;
    return { window: window.name, startMs, bucketMs: window.bucketMs, counts };
  }
}

function idOf(r: { service: string; target: string }): string {
  return `${r.service}/${r.target}`;
}
