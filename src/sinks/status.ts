import { formatEndpoint } from '../net/address.js';
import type { ProbeSpec } from '../types.js';
import type { ProbeResult } from '../result.js';
import type { TargetState } from './answer.js';
import { History, type HistoryPoint, type LoadSummary, type TargetRecord } from './history.js';

export type { HistoryPoint };

export interface TargetStatus extends Pick<ProbeSpec, 'id' | 'service' | 'target' | 'control' | 'path' | 'location'> {
  endpoint: string;
  phases: string[];
  latest: ProbeResult | null;
  /** When the latest verdict began (ISO 8601), from the records: it survives restarts. */
  since: string | null;
  history: HistoryPoint[];
}

/**
 * What /api/status, the status page and its detail views show: the planned targets, each with its
 * latest result, since when its verdict holds and its history (History: built from the records at
 * startup, then kept up to date from live results).
 */
export class StatusBoard {
  readonly history = new History();
  private specs = new Map<string, ProbeSpec>();

  declare(specs: readonly ProbeSpec[]): void {
    this.specs = new Map(specs.map((s) => [s.id, s]));
    this.history.declare(this.specs.keys());
  }

  update(result: ProbeResult): void {
    this.history.observe(result);
  }

  /** Builds the history from the records (asynchronously; see History.load). */
  load(recordsDir: string, show: (r: ProbeResult) => ProbeResult, now?: number): Promise<LoadSummary> {
    return this.history.load(recordsDir, show, now);
  }

  get(id: string): (TargetStatus & { record: TargetRecord }) | null {
    const spec = this.specs.get(id);
    const record = this.history.target(id);
    return spec && record ? { ...statusOf(spec, record), record } : null;
  }

  list(): TargetStatus[] {
    return [...this.specs.values()].map((s) => statusOf(s, this.history.target(s.id)));
  }

  /** What the answer lines and banners are judged from. */
  states(): TargetState[] {
    return this.list().map((t) => ({ service: t.service, target: t.target, control: t.control, path: t.path, location: t.location, latest: t.latest, since: t.since }));
  }
}

function statusOf(s: ProbeSpec, record: TargetRecord | null): TargetStatus {
  return {
    id: s.id,
    service: s.service,
    target: s.target,
    control: s.control,
    path: s.path,
    location: s.location,
    endpoint: s.endpoint.url ?? formatEndpoint(s.endpoint.host, s.endpoint.port),
    phases: s.phases.map((p) => p.name),
    latest: record?.latest ?? null,
    since: record?.since ?? null,
    history: [...(record?.points ?? [])],
  };
}
