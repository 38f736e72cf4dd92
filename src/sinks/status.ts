import type { ProbeSpec } from '../types.js';
import type { ProbeResult, Verdict } from '../result.js';

export interface HistoryPoint {
  startedAt: string;
  verdict: Verdict;
  failure: string | null;
  failedPhase: string | null;
  durationMs: number;
}

export interface TargetStatus {
  id: string;
  service: string;
  target: string;
  control: boolean;
  endpoint: string;
  phases: string[];
  latest: ProbeResult | null;
  history: HistoryPoint[];
}

/** The latest result and a short history per target, in memory, for /api/status and the page. */
export class StatusBoard {
  private readonly targets = new Map<string, TargetStatus>();

  constructor(private readonly historyLength = 48) {}

  declare(specs: readonly ProbeSpec[]): void {
    const keep = new Set(specs.map((s) => s.id));
    for (const id of this.targets.keys()) if (!keep.has(id)) this.targets.delete(id);
    for (const s of specs) {
      const existing = this.targets.get(s.id);
      this.targets.set(s.id, {
        id: s.id,
        service: s.service,
        target: s.target,
        control: s.control,
        endpoint: s.endpoint.url ?? `${s.endpoint.host}:${s.endpoint.port}`,
        phases: s.phases.map((p) => p.name),
        latest: existing?.latest ?? null,
        history: existing?.history ?? [],
      });
    }
  }

  update(result: ProbeResult): void {
    const t = this.targets.get(`${result.service}/${result.target}`);
    if (!t) return;
    t.latest = result;
    t.history.push({
      startedAt: result.startedAt,
      verdict: result.verdict,
      failure: result.failure,
      failedPhase: result.failedPhase,
      durationMs: result.durationMs,
    });
    if (t.history.length > this.historyLength) t.history.splice(0, t.history.length - this.historyLength);
  }

  list(): TargetStatus[] {
    return [...this.targets.values()];
  }
}
