import type { Logger } from '../log.js';
import type { Plan } from '../plan/index.js';
import type { ProbeSpec } from '../types.js';
import type { ProbeResult } from '../result.js';
import { SafetyGuard } from './guard.js';
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

  constructor(plan: Plan, log: Logger) {
    // Watching the event loop from the start, so the first runs already know how far to trust their timings.
    sharedLoopMonitor();
    this.deps = depsOf(plan, log);
    this.board = new ControlBoard(controlMaxAge(plan), plan.phases);
  }

  update(plan: Plan): void {
    this.deps = depsOf(plan, this.deps.log);
    this.board = this.board.withMaxAge(controlMaxAge(plan));
  }

  async probe(spec: ProbeSpec, signal: AbortSignal): Promise<ProbeResult> {
    const run = await runSpec(spec, this.deps, signal);
    if (spec.control) this.board.record(run);
    return this.board.judge(run, spec.control);
  }

  /**
   * One cycle: controls first (service verdicts lean on them), then services; at most
   * `concurrency` runs at once. Results are handed over as they finish.
   */
  async cycle(specs: ProbeSpec[], concurrency: number, signal: AbortSignal, onResult: (r: ProbeResult) => void): Promise<void> {
    const limiter = new Limiter(concurrency);
    const runAll = (list: ProbeSpec[]): Promise<void[]> =>
      Promise.all(
        list.map((spec) =>
          limiter.run(async () => {
            const deadline = AbortSignal.any([signal, AbortSignal.timeout(spec.runDeadlineMs)]);
            onResult(await this.probe(spec, deadline));
          }),
        ),
      );
    await runAll(specs.filter((s) => s.control));
    await runAll(specs.filter((s) => !s.control));
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
