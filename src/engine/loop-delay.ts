import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/**
 * Above this worst event-loop delay during a run, its timings are flagged unreliable: every
 * duration callprobe records is read off the event loop, so a stall (a synchronous read, a long
 * GC pause, a starved host) inflates whatever was being timed by up to the stall. 50 ms is far
 * above what a healthy loop shows (its 10 ms sampling timer is typically late by a few ms) and
 * below the latencies the verdicts compare.
 */
export const UNRELIABLE_LOOP_DELAY_MS = 50;

/** Windows of 100 ms: the finest span a run's worst delay is attributed to. */
const WINDOW_MS = 100;
/** Ten minutes of windows; a longer run is judged on its last ten minutes. */
const WINDOWS = 6000;

/**
 * The worst event-loop delay seen while a run was going. One histogram for the process (Node's
 * `monitorEventLoopDelay`, sampling every 10 ms), read and reset every 100 ms into a ring of
 * per-window maxima, so that each run asks for the worst delay over its own span however many
 * runs overlap. Its timer is unref'd: it never keeps a process alive.
 */
export class LoopDelayMonitor {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private readonly endsAt = new Float64Array(WINDOWS);
  private readonly maxMs = new Float64Array(WINDOWS);
  private next = 0;
  private filled = 0;
  private timer: NodeJS.Timeout | null = null;

  start(): this {
    if (this.timer) return this;
    this.histogram.enable();
    this.timer = setInterval(() => this.roll(), WINDOW_MS);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.histogram.disable();
  }

  /** The worst delay (ms, µs precision) seen between two performance.now() readings. */
  worstBetween(fromMs: number, toMs: number): number {
    let worst = 0;
    // Newest first, stopping at the first window that ended before the run began: the cost is the
    // run's own length in windows, not the whole ring's.
    for (let n = 0; n < this.filled; n++) {
      const i = (this.next + WINDOWS - 1 - n) % WINDOWS;
      if (this.endsAt[i]! < fromMs) break;
      // A window [endsAt - WINDOW_MS, endsAt] that overlaps the run; a stall is recorded in the window it ends in.
      if (this.endsAt[i]! - WINDOW_MS <= toMs) worst = Math.max(worst, this.maxMs[i]!);
    }
    // The window still open (its maximum not rolled in yet) overlaps a run that ends in it.
    const lastEnd = this.filled === 0 ? -Infinity : this.endsAt[(this.next + WINDOWS - 1) % WINDOWS]!;
    if (toMs >= lastEnd) worst = Math.max(worst, this.currentMaxMs());
    return Math.round(worst * 1000) / 1000;
  }

  private currentMaxMs(): number {
    // An empty histogram reports its max as 0; a never-enabled one may report a huge sentinel.
    return this.histogram.count > 0 ? this.histogram.max / 1e6 : 0;
  }

  private roll(): void {
    this.endsAt[this.next] = performance.now();
    this.maxMs[this.next] = this.currentMaxMs();
    this.histogram.reset();
    this.next = (this.next + 1) % WINDOWS;
    this.filled = Math.min(this.filled + 1, WINDOWS);
  }
}

let shared: LoopDelayMonitor | null = null;

/** The process's one monitor, started on first use. */
export function sharedLoopMonitor(): LoopDelayMonitor {
  return (shared ??= new LoopDelayMonitor().start());
}
