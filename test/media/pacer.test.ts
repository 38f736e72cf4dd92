import { describe, expect, it } from 'vitest';
import { PacerClock, pacingReport, runPaced } from '../../src/media/pacer.js';

describe.each(['worker', 'spin'] as const)('PacerClock (%s)', (mode) => {
  it('fires waiters in deadline order, never before their deadline', async () => {
    const clock = new PacerClock({ mode });
    expect(clock.mode).toBe(mode);
    const t0 = performance.now();
    const order: number[] = [];
    const fired = await Promise.all(
      [30, 5, 20, 5.5, 12].map((d) =>
        clock.at(t0 + d).then((at) => {
          order.push(d);
          return { d, at };
        }),
      ),
    );
    expect(order).toEqual([5, 5.5, 12, 20, 30]);
    for (const f of fired) expect(f.at).toBeGreaterThanOrEqual(t0 + f.d);
  });

  it('an aborted wait rejects with the reason and leaves the others on time', async () => {
    const clock = new PacerClock({ mode });
    const ac = new AbortController();
    const t0 = performance.now();
    const cancelled = clock.at(t0 + 10, ac.signal);
    const kept = clock.at(t0 + 20);
    ac.abort(new Error('stop'));
    await expect(cancelled).rejects.toThrow('stop');
    expect(await kept).toBeGreaterThanOrEqual(t0 + 20);
    await expect(clock.at(t0, ac.signal)).rejects.toThrow('stop');
  });
});

describe('runPaced', () => {
  it('sends on absolute deadlines (the shared clock) and reports its own error', async () => {
    const scheduled: number[] = [];
    const start = performance.now() + 5;
    const report = await runPaced({ count: 25, intervalMs: 20, startMs: start }, (i, at) => {
      scheduled.push(at - start);
      expect(i).toBe(scheduled.length - 1);
    });
    expect(scheduled.map((x) => Math.round(x * 1e6) / 1e6)).toEqual(Array.from({ length: 25 }, (_, i) => i * 20));
    expect(report.sends).toBe(25);
    // Never early; how late is a speed figure, measured by bench/pacing.ts, not asserted on a shared machine.
    expect(report.p50Ms).toBeGreaterThanOrEqual(0);
  });

  it('a blocked loop delays sends but never shifts the schedule (no drift)', async () => {
    const sentAt: number[] = [];
    const scheduled: number[] = [];
    const start = performance.now() + 5;
    const report = await runPaced({ count: 10, intervalMs: 10, startMs: start }, (i, due) => {
      sentAt.push(performance.now() - start);
      scheduled.push(due - start);
      if (i === 2) {
        const until = performance.now() + 45; // the event loop is busy for 45 ms
        while (performance.now() < until);
      }
    });
    // The schedule is the original one after the stall: packet i is due at i × 10 ms, exactly.
    expect(scheduled.map((t) => Math.round(t * 1000) / 1000)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    // Packets 3-6 (due at 30-60 ms) go out late, after the stall; none goes out early.
    expect(sentAt[3]!).toBeGreaterThanOrEqual(65);
    for (let i = 0; i < 10; i++) expect(sentAt[i]!).toBeGreaterThanOrEqual(scheduled[i]!);
    expect(report.lateOver1Ms).toBeGreaterThanOrEqual(3);
    expect(report.maxMs).toBeGreaterThan(15);
  });
});

describe('pacingReport', () => {
  it('nearest-rank p50/p99, max, mean and the late count, in ms rounded to µs', () => {
    const errors = Array.from({ length: 100 }, (_, i) => i / 100); // 0, 0.01, ... 0.98, then one 3 ms late: mean (48.51 + 3) / 100
    errors[99] = 3.0000004;
    expect(pacingReport(errors)).toEqual({ sends: 100, p50Ms: 0.49, p99Ms: 0.98, maxMs: 3, meanMs: 0.515, lateOver1Ms: 1 });
    expect(pacingReport([])).toEqual({ sends: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, meanMs: 0, lateOver1Ms: 0 });
  });
});
