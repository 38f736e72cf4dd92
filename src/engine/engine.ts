import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { Plan } from '../plan/index.js';
import type { ProbeSpec } from '../types.js';
import type { ProbeResult } from '../result.js';
import { SafetyGuard } from './guard.js';
import { KnownResponsive } from './known-responsive.js';
import { SameNetworkLog } from './neighbours.js';
import { newSeed, seededRandom, shuffled } from './order.js';
import { Limiter } from './limiter.js';
import { sharedLoopMonitor } from './loop-delay.js';
import { runSpec, type RunnerDeps } from './runner.js';
import { ControlBoard } from './verdict.js';

/**
 * Runs specs and judges them against the controls: the piece `once` and the daemon share.
 * `update` swaps in a reloaded plan's guard and settings for the runs that start afterwards.
 */
export class Engine {
  private deps: RunnerDeps;
  private board: ControlBoard;
  private readonly responsive: KnownResponsive;
  private readonly neighbours = new SameNetworkLog();
  /** The seed of this process's order (the scheduler's and each `once` cycle's), and the runs started under it. */
  readonly seed: string;
  private started = 0;

  /** @param dataDir where what the vantage has learnt is kept across restarts (which targets answer); none: nothing is kept. */
  constructor(plan: Plan, log: Logger, dataDir: string | null = null, seed: string = newSeed()) {
    this.seed = seed;
    // Watching the event loop from the start, so the first runs already know how far to trust their timings.
    sharedLoopMonitor();
    this.deps = depsOf(plan, log);
    this.board = new ControlBoard(controlMaxAge(plan), plan.phases);
    this.responsive = new KnownResponsive(dataDir === null ? null : join(dataDir, 'state', 'known-responsive.json'), log);
  }

  update(plan: Plan): void {
    this.deps = depsOf(plan, this.deps.log);
    this.board = this.board.withMaxAge(controlMaxAge(plan));
  }

  async probe(spec: ProbeSpec, signal: AbortSignal, index = this.started): Promise<ProbeResult> {
    this.started++;
    const record = await runSpec(spec, this.deps, signal);
    const before = this.neighbours.before(record);
    const run = { ...record, order: { seed: this.seed, index }, ...(before.length > 0 ? { sameNetworkBefore: before } : {}) };
    if (spec.control) this.board.record(run);
    const ambiguous = this.ambiguousPhase(spec);
    if (ambiguous !== null && run.phases.find((p) => p.phase === ambiguous)?.ok) this.responsive.record(spec.id, run.startedAt);
    return this.board.judge(run, spec.control, Date.now(), {
      ambiguousSilence: ambiguous !== null && run.failedPhase === ambiguous && run.failure === 'generic_timeout_error',
      knownToAnswer: spec.answersProbes || this.responsive.has(spec.id),
    });
  }

  /** Writes what must outlive the process (at shutdown). */
  close(): void {
    this.responsive.save();
  }

  /** The phase of this spec whose silence alone is no evidence (a probe the target may ignore), if any. */
  private ambiguousPhase(spec: ProbeSpec): string | null {
    for (const planned of spec.phases) {
      if (this.deps.phases.get(planned.name)?.silenceAmbiguous?.(planned.params)) return planned.name;
    }
    return null;
  }

  /**
   * One cycle: controls first (service verdicts lean on them), then services; at most
   * `concurrency` runs at once. Results are handed over as they finish.
   */
  async cycle(specs: ProbeSpec[], concurrency: number, signal: AbortSignal, onResult: (r: ProbeResult) => void): Promise<void> {
    const limiter = new Limiter(concurrency);
    // Random within controls and within services, from the engine's seed: each record names its place.
    const random = seededRandom(this.seed);
    const order = [...shuffled(specs.filter((s) => s.control), random), ...shuffled(specs.filter((s) => !s.control), random)];
    const runAll = (list: ProbeSpec[]): Promise<void[]> =>
      Promise.all(
        list.map((spec) =>
          limiter.run(async () => {
            const deadline = AbortSignal.any([signal, AbortSignal.timeout(spec.runDeadlineMs)]);
            onResult(await this.probe(spec, deadline, order.indexOf(spec)));
          }),
        ),
      );
    await runAll(order.filter((s) => s.control));
    await runAll(order.filter((s) => !s.control));
  }
}

function depsOf(plan: Plan, log: Logger): RunnerDeps {
  const { vantage } = plan.config;
  return {
    phases: plan.phases,
    guard: new SafetyGuard(plan.safety),
    settings: plan.settings,
    vantage: {
      name: vantage.name,
      ...(vantage.asn !== undefined ? { asn: vantage.asn } : {}),
      ...(vantage.country !== undefined ? { country: vantage.country } : {}),
    },
    log,
  };
}

/** A control result counts for services for two control intervals plus a run deadline. */
function controlMaxAge(plan: Plan): number {
  const controls = plan.specs.filter((s) => s.control);
  const longest = Math.max(plan.config.schedule.interval, ...controls.map((s) => s.intervalMs));
  return 2 * longest + plan.config.schedule.runDeadline;
}
