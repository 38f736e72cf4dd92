/**
 * The media sender's clock: packets go out at absolute deadlines on the monotonic clock
 * (`performance.now()`), never "every 20 ms from the last one", so errors do not accumulate into
 * drift, and the sender measures its own error (docs/protocols.md#media-measurement: a measurement must show its own
 * error).
 *
 * Why not `setTimeout` alone: Node's timers have 1 ms resolution against a loop time cached at
 * the start of each loop iteration (libuv `uv_now`), so a timer fires anywhere from about 1 ms
 * early to 1-2 ms late relative to the high-resolution clock. Two ways to cover the last stretch:
 *
 * - `worker` (default): a tiny worker thread sleeps until the deadline with `Atomics.wait`, whose
 *   timeout has sub-millisecond resolution (a futex, Linux timer slack 50 µs), and wakes the main
 *   thread with a message; the main thread sleeps in epoll meanwhile, so waiting costs no CPU and
 *   echoes keep being read. It aims `leadMs` early (the message's delivery time, learnt as it
 *   goes) and `setImmediate` turns cover what is left, a few tens of µs.
 * - `spin`: a `setTimeout` aims `spinMs` before the deadline and `setImmediate` turns cover the
 *   rest. Exact when the machine is idle, but each waiting millisecond is a millisecond of CPU,
 *   and under load the busy process is preempted, which is worse than not spinning
 *   (bench/pacing.ts measures both). Used when worker threads are unavailable.
 *
 * In both, a `setTimeout` for a little after the deadline stays armed as a safety net and keeps
 * the process alive while a stream waits. One clock serves every stream of the process: one
 * wait for the earliest deadline of all, so 20 concurrent streams cost one wait, not twenty.
 */
import { Worker } from 'node:worker_threads';
import { percentile } from './stats.js';

export interface PacingReport {
  /** Packets whose send time was measured. */
  readonly sends: number;
  /** Actual minus scheduled send time, ms (µs precision): median, 99th percentile, worst, mean. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
  /** Sends more than 1 ms late: the budget docs/protocols.md#media-measurement sets for the sender's own jitter. */
  readonly lateOver1Ms: number;
}

interface Waiter {
  readonly deadline: number;
  readonly fire: (now: number) => void;
}

export type PacerMode = 'worker' | 'spin';

export interface PacerOptions {
  readonly mode?: PacerMode;
  /** `spin`: the timer's lead before the deadline; one libuv timer step (1 ms) by default. */
  readonly spinMs?: number;
}

/** The safety-net timer fires this long after a deadline if nothing else woke us. */
const SAFETY_MS = 2;
/** Bounds of the learnt worker lead: the delivery time of its message to the main thread. */
const MIN_LEAD_MS = 0.02;
const MAX_LEAD_MS = 0.5;

/**
 * The waker thread (CommonJS, evaluated: no file to find in src/ or dist/). Shared memory:
 * Int32 [0] a generation bumped on every change, Float64 [1] the wake time in ms since
 * `timeOrigin` (the same epoch in both threads), 0 for none. It wakes the main thread once per
 * distinct wake time.
 */
const WAKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const gen = new Int32Array(workerData, 0, 1);
const at = new Float64Array(workerData, 8, 1);
const now = () => performance.timeOrigin + performance.now();
let fired = 0;
for (;;) {
  const g = Atomics.load(gen, 0);
  const t = at[0];
  if (t === 0 || t === fired) { Atomics.wait(gen, 0, g); continue; }
  const wait = t - now();
  if (wait > 0) { Atomics.wait(gen, 0, g, wait); continue; }
  fired = t;
  parentPort.postMessage(t);
}
`;

class Waker {
  private readonly gen: Int32Array;
  private readonly at: Float64Array;
  private readonly worker: Worker;
  /** Learnt delivery time of a wake-up, ms (an EWMA, RFC 6298-style gain of 1/8). */
  lead = 0.1;

  constructor(onWake: () => void) {
    const shared = new SharedArrayBuffer(16);
    this.gen = new Int32Array(shared, 0, 1);
    this.at = new Float64Array(shared, 8, 1);
    this.worker = new Worker(WAKER_SOURCE, { eval: true, workerData: shared, stdout: false, stderr: false });
    this.worker.on('message', (target: number) => {
      const late = performance.timeOrigin + performance.now() - target;
      this.lead = Math.min(MAX_LEAD_MS, Math.max(MIN_LEAD_MS, this.lead + (late - this.lead) / 8));
      onWake();
    });
    this.worker.on('error', () => {});
    // The waker never keeps the process alive (the safety-net timer does, while a stream waits).
    // After the listeners: adding a 'message' listener refs the worker again.
    this.worker.unref();
  }

  /** Wake the main thread at `deadline` (performance.now() ms) minus the learnt lead. */
  arm(deadline: number): void {
    this.at[0] = performance.timeOrigin + deadline - this.lead;
    Atomics.add(this.gen, 0, 1);
    Atomics.notify(this.gen, 0);
  }
}

export class PacerClock {
  /** Waiters sorted by deadline, earliest first (a few dozen at most: insertion is cheap). */
  private readonly queue: Waiter[] = [];
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private waker: Waker | null = null;
  readonly mode: PacerMode;
  private readonly spinMs: number;

  constructor(opts: PacerOptions = {}) {
    this.spinMs = opts.spinMs ?? 1;
    this.mode = opts.mode ?? 'worker';
  }

  /** Resolves at `deadline` (performance.now() ms), never before, with the time it fired. */
  at(deadline: number, signal?: AbortSignal): Promise<number> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const waiter: Waiter = {
        deadline,
        fire: (now) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(now);
        },
      };
      const onAbort = (): void => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        this.arm();
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      let i = this.queue.length;
      while (i > 0 && (this.queue[i - 1] as Waiter).deadline > deadline) i--;
      this.queue.splice(i, 0, waiter);
      if (i === 0) this.arm();
    });
  }

  private readonly tick = (): void => {
    this.immediate = null;
    const now = performance.now();
    while (this.queue.length > 0 && (this.queue[0] as Waiter).deadline <= now) (this.queue.shift() as Waiter).fire(now);
    this.arm();
  };

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const next = this.queue[0];
    if (!next) {
      if (this.immediate) clearImmediate(this.immediate);
      this.immediate = null;
      return;
    }
    const remaining = next.deadline - performance.now();
    const waker = this.mode === 'worker' ? this.startWaker() : null;
    const finalStretch = waker ? waker.lead : this.spinMs;
    if (remaining <= finalStretch) {
      this.immediate ??= setImmediate(this.tick);
      return;
    }
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = null;
    if (waker) {
      waker.arm(next.deadline);
      this.timer = setTimeout(this.tick, remaining + SAFETY_MS);
    } else {
      this.timer = setTimeout(this.tick, remaining - this.spinMs);
    }
  }

  private startWaker(): Waker | null {
    if (this.waker === null && this.mode === 'worker') {
      try {
        this.waker = new Waker(this.tick);
      } catch {
        (this as { mode: PacerMode }).mode = 'spin'; // no worker threads here: fall back
      }
    }
    return this.waker;
  }
}

/** The clock shared by every stream in this process. */
export const sharedClock = new PacerClock();

export interface PacedRunOptions {
  /** Packets to send. */
  readonly count: number;
  /** Spacing between deadlines, ms. */
  readonly intervalMs: number;
  /** The first deadline (performance.now() ms); default: now. */
  readonly startMs?: number;
  readonly signal?: AbortSignal;
  readonly clock?: PacerClock;
}

/**
 * Calls `send(i, scheduledMs)` for i = 0..count-1 at startMs + i·intervalMs and reports the
 * pacing error. A send that is late (the loop was busy) goes out at once, late, and the next one
 * keeps its own deadline: the schedule never slides.
 */
export async function runPaced(opts: PacedRunOptions, send: (i: number, scheduledMs: number) => void): Promise<PacingReport> {
  const clock = opts.clock ?? sharedClock;
  const start = opts.startMs ?? performance.now();
  const errors = new Float64Array(opts.count);
  let n = 0;
  for (let i = 0; i < opts.count; i++) {
    const deadline = start + i * opts.intervalMs;
    await clock.at(deadline, opts.signal);
    // Read the clock again right before the send: that is the send time the error is about.
    errors[n++] = performance.now() - deadline;
    send(i, deadline);
  }
  return pacingReport(errors.subarray(0, n));
}

/** p50/p99/max/mean of pacing errors (ms), nearest-rank percentiles, rounded to µs. */
export function pacingReport(errors: ArrayLike<number>): PacingReport {
  const sorted = Array.from(errors).sort((a, b) => a - b);
  const n = sorted.length;
  const rank = (p: number): number => (n === 0 ? 0 : percentile(sorted, p));
  let sum = 0;
  let late = 0;
  for (const e of sorted) {
    sum += e;
    if (e > 1) late++;
  }
  return {
    sends: n,
    p50Ms: us(rank(50)),
    p99Ms: us(rank(99)),
    maxMs: us(n === 0 ? 0 : (sorted[n - 1] as number)),
    meanMs: us(n === 0 ? 0 : sum / n),
    lateOver1Ms: late,
  };
}

function us(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
