import { ProbeFailure } from '../failure.js';
import type { ProbeSpec } from '../types.js';
import { Limiter } from './limiter.js';

export interface SchedulerOptions {
  concurrency: number;
  /** Fraction of the interval each run is shifted by at random, so a fleet does not synchronise. */
  jitter: number;
  run(spec: ProbeSpec, signal: AbortSignal): Promise<void>;
  /** A slot was skipped because the previous run of the same spec had not finished. */
  onOverlap?(spec: ProbeSpec): void;
  random?: () => number;
  /**
   * First runs of services are spread over this long (capped at each spec's interval), so a start
   * with rotation targets looks like an ordinary cycle, not a burst. Default 30 s.
   */
  startSpreadMs?: number;
}

interface Slot {
  spec: ProbeSpec;
  /** Dropped by a reload while its run was still going: forgotten when that run ends. */
  removed?: true;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
  controller?: AbortController;
}

/** Default spread of first service runs after start; controls go first (verdicts need them). */
const SERVICE_START_SPREAD_MS = 30_000;

/**
 * Runs each spec every `intervalMs` (± jitter), never two runs of one spec at once, at most
 * `concurrency` runs in all, each under its own deadline. Controls start first so that the first
 * service verdicts already have controls to lean on.
 */
export class Scheduler {
  private slots = new Map<string, Slot>();
  private readonly limiter: Limiter;
  private readonly random: () => number;
  private stopped = false;

  constructor(private readonly options: SchedulerOptions) {
    this.limiter = new Limiter(options.concurrency);
    this.random = options.random ?? Math.random;
  }

  start(specs: ProbeSpec[]): void {
    for (const spec of specs) {
      const slot: Slot = { spec };
      this.slots.set(spec.id, slot);
      this.arm(slot, spec.control ? this.random() * 1000 : 2000 + this.spread(spec));
    }
  }

  /** Swaps in a new plan (SIGHUP): runs in flight finish; unchanged specs keep their rhythm. */
  replace(specs: ProbeSpec[]): void {
    const next = new Map(specs.map((s) => [s.id, s]));
    for (const [id, slot] of this.slots) {
      if (!next.has(id)) {
        clearTimeout(slot.timer);
        // A run in flight stays tracked, so stop() still waits for it and a re-added spec cannot overlap it.
        if (slot.running) slot.removed = true;
        else this.slots.delete(id);
      }
    }
    for (const spec of specs) {
      const slot = this.slots.get(spec.id);
      if (slot?.removed) {
        delete slot.removed;
        slot.spec = spec;
        this.arm(slot, this.spread(spec));
      } else if (slot) {
        const changed = JSON.stringify(slot.spec) !== JSON.stringify(spec);
        slot.spec = spec;
        if (changed) {
          clearTimeout(slot.timer);
          this.arm(slot, this.spread(spec));
        }
      } else {
        const fresh: Slot = { spec };
        this.slots.set(spec.id, fresh);
        this.arm(fresh, this.spread(spec));
      }
    }
  }

  /**
   * Stops scheduling, lets runs in flight finish for up to `graceMs`, then cancels them (their
   * current phase becomes `interrupted`) and waits for them to report.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    for (const slot of this.slots.values()) clearTimeout(slot.timer);
    const running = [...this.slots.values()].map((s) => s.running).filter((p): p is Promise<void> => p !== undefined);
    if (running.length === 0) return;
    let graceTimer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (graceTimer = setTimeout(resolve, graceMs)));
    await Promise.race([Promise.allSettled(running), grace]);
    clearTimeout(graceTimer);
    for (const slot of this.slots.values()) slot.controller?.abort(new ProbeFailure('interrupted', 'shutting down'));
    await Promise.allSettled(running);
  }

  get active(): number {
    return this.limiter.inFlight;
  }

  /** A random delay within the start spread, capped at the spec's own interval. */
  private spread(spec: ProbeSpec): number {
    return this.random() * Math.min(spec.intervalMs, this.options.startSpreadMs ?? SERVICE_START_SPREAD_MS);
  }

  private arm(slot: Slot, delayMs: number): void {
    if (this.stopped) return;
    slot.timer = setTimeout(() => this.fire(slot), Math.max(0, delayMs));
  }

  private fire(slot: Slot): void {
    const { spec } = slot;
    const jitter = (this.random() * 2 - 1) * this.options.jitter * spec.intervalMs;
    this.arm(slot, spec.intervalMs + jitter);
    if (slot.running) {
      this.options.onOverlap?.(spec);
      return;
    }
    const controller = new AbortController();
    slot.controller = controller;
    slot.running = this.limiter
      .run(async () => {
        if (this.stopped) return;
        const deadline = setTimeout(
          () => controller.abort(new ProbeFailure('interrupted', `run deadline of ${spec.runDeadlineMs} ms exceeded`)),
          spec.runDeadlineMs,
        );
        try {
          await this.options.run(spec, controller.signal);
        } finally {
          clearTimeout(deadline);
        }
      })
      .finally(() => {
        slot.running = undefined;
        slot.controller = undefined;
        if (slot.removed && this.slots.get(spec.id) === slot) this.slots.delete(spec.id);
      });
  }
}
