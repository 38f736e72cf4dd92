import type { Verdict } from '../result.js';

/** A stretch of runs of one target with one verdict: "blocked since 14:05, 212 runs". */
export interface Period {
  verdict: Verdict;
  /** The first run's start (ISO 8601). */
  since: string;
  /** The last run's start. */
  until: string;
  runs: number;
  /** Runs in it that could conclude nothing (`error`, e.g. the network was down for a while). */
  inconclusive: number;
}

/**
 * A target's runs, in time order, as periods of one verdict. A run that concludes nothing (`error`)
 * does not end a period: a block interrupted by ten minutes of a dead network is still one block,
 * with those runs counted as inconclusive. Only runs that conclude something start a new period
 * (or errors before any conclusion). The trailing errors are tracked on their own
 * (`errorSince`): they are what the page shows while nothing can be concluded.
 */
export class PeriodTracker {
  private readonly kept: Period[] = [];
  /** When the errors at the end began, or null when the last run concluded something. */
  errorSince: string | null = null;

  /** @param limit how many periods to keep (the oldest go first). */
  constructor(private readonly limit = Infinity) {}

  add(verdict: Verdict, startedAt: string): void {
    const current = this.kept.at(-1);
    if (verdict === 'error') {
      this.errorSince ??= startedAt;
      if (current) {
        current.runs++;
        current.inconclusive++;
        current.until = startedAt;
      } else this.push({ verdict, since: startedAt, until: startedAt, runs: 1, inconclusive: 1 });
      return;
    }
    this.errorSince = null;
    if (current?.verdict === verdict) {
      current.runs++;
      current.until = startedAt;
    } else this.push({ verdict, since: startedAt, until: startedAt, runs: 1, inconclusive: 0 });
  }

  get periods(): readonly Period[] {
    return this.kept;
  }

  get current(): Period | null {
    return this.kept.at(-1) ?? null;
  }

  /** When the target's latest verdict began: the trailing errors', else its period's. */
  sinceFor(latest: Verdict): string | null {
    return latest === 'error' ? this.errorSince : (this.current?.since ?? null);
  }

  private push(p: Period): void {
    this.kept.push(p);
    if (this.kept.length > this.limit) this.kept.shift();
  }
}
