import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Scheduler } from '../../src/engine/scheduler.js';
import type { ProbeSpec } from '../../src/types.js';
import { specFor } from '../helpers/spec.js';

function spec(target: string, intervalMs: number, control = false): ProbeSpec {
  return { ...specFor({ endpoint: { host: '127.0.0.1', port: 1 }, phases: ['tcp'], target, control }), intervalMs, runDeadlineMs: 50_000 };
}

describe('scheduler', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs controls before services, then each spec every interval', async () => {
    const starts: Array<[string, number]> = [];
    const s = new Scheduler({
      concurrency: 4,
      jitter: 0,
      random: () => 0.5,
      run: async (sp) => {
        starts.push([sp.target, Date.now()]);
      },
    });
    const t0 = Date.now();
    s.start([spec('svc', 60_000), spec('ctl', 60_000, true)]);
    await vi.advanceTimersByTimeAsync(130_000);
    await s.stop(0);
    // control at 0.5 s; service at 2 s + 0.5 x min(interval, 30 s) = 17 s; then every 60 s.
    expect(starts.map(([t, at]) => [t, at - t0])).toEqual([
      ['ctl', 500],
      ['svc', 17_000],
      ['ctl', 60_500],
      ['svc', 77_000],
      ['ctl', 120_500],
    ]);
  });

  it('keeps jitter within ±jitter × interval', async () => {
    const starts: number[] = [];
    let r = 0;
    const randoms = [0, 1, 0, 0.999, 0.5];
    const s = new Scheduler({
      concurrency: 1,
      jitter: 0.1,
      random: () => randoms[r++ % randoms.length]!,
      run: async () => {
        starts.push(Date.now());
      },
    });
    s.start([spec('ctl', 10_000, true)]);
    await vi.advanceTimersByTimeAsync(100_000);
    await s.stop(0);
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    expect(gaps.length).toBeGreaterThan(5);
    for (const g of gaps) {
      expect(g).toBeGreaterThanOrEqual(9_000);
      expect(g).toBeLessThanOrEqual(11_000);
    }
  });

  it('never overlaps two runs of one spec, and counts the skipped slot', async () => {
    let active = 0;
    let maxActive = 0;
    const overlaps: string[] = [];
    const s = new Scheduler({
      concurrency: 4,
      jitter: 0,
      random: () => 0,
      run: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((res) => setTimeout(res, 25_000)); // longer than the interval
        active--;
      },
      onOverlap: (sp) => overlaps.push(sp.target),
    });
    s.start([spec('slow', 10_000, true)]);
    await vi.advanceTimersByTimeAsync(35_000);
    const stopping = s.stop(0);
    await vi.advanceTimersByTimeAsync(30_000); // the run ignores its signal: let it finish
    await stopping;
    expect(maxActive).toBe(1);
    expect(overlaps).toEqual(['slow', 'slow']);
  });

  it('bounds concurrency across specs', async () => {
    let active = 0;
    let maxActive = 0;
    const s = new Scheduler({
      concurrency: 2,
      jitter: 0,
      random: () => 0,
      run: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((res) => setTimeout(res, 1000));
        active--;
      },
    });
    s.start(['a', 'b', 'c', 'd', 'e'].map((t) => spec(t, 60_000, true)));
    await vi.advanceTimersByTimeAsync(10_000);
    const stopping = s.stop(0);
    await vi.advanceTimersByTimeAsync(2_000);
    await stopping;
    expect(maxActive).toBe(2);
  });

  it('cancels runs still going after the stop grace, with an interrupted reason', async () => {
    const reasons: unknown[] = [];
    const s = new Scheduler({
      concurrency: 1,
      jitter: 0,
      random: () => 0,
      run: (_sp, signal) =>
        new Promise<void>((resolve) =>
          signal.addEventListener('abort', () => {
            reasons.push(signal.reason);
            resolve();
          }),
        ),
    });
    s.start([spec('hang', 60_000, true)]);
    await vi.advanceTimersByTimeAsync(100);
    const stopping = s.stop(1000);
    await vi.advanceTimersByTimeAsync(1000);
    await stopping;
    expect(reasons).toHaveLength(1);
    expect((reasons[0] as { code: string }).code).toBe('interrupted');
  });

  it('keeps a spec removed by a reload tracked while its run is going: stop cancels it, a re-add does not overlap it', async () => {
    let active = 0;
    let maxActive = 0;
    const reasons: unknown[] = [];
    const s = new Scheduler({
      concurrency: 4,
      jitter: 0,
      random: () => 0,
      run: (_sp, signal) =>
        new Promise<void>((resolve) => {
          active++;
          maxActive = Math.max(maxActive, active);
          const done = () => {
            active--;
            resolve();
          };
          const t = setTimeout(done, 20_000);
          signal.addEventListener('abort', () => {
            clearTimeout(t);
            reasons.push(signal.reason);
            done();
          });
        }),
    });
    s.start([spec('a', 5_000, true)]);
    await vi.advanceTimersByTimeAsync(1_000); // a is running (20 s)
    s.replace([]);
    s.replace([spec('a', 5_000, true)]); // re-added while the old run goes on
    await vi.advanceTimersByTimeAsync(10_000);
    expect(maxActive).toBe(1);
    s.replace([]);
    const stopping = s.stop(100);
    await vi.advanceTimersByTimeAsync(200);
    await stopping;
    expect(active).toBe(0);
    expect((reasons[0] as { code: string }).code).toBe('interrupted');
  });
});
