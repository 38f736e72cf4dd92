import { describe, expect, it } from 'vitest';
import { analyseSweep, sweepSteps } from '../../src/media/sweep.js';

describe('rate sweep', () => {
  it('steps: each rate for stepMs in packets of one size (200 B: 50 ms apart at 32 kbit/s, 3.125 ms at 512)', () => {
    expect(sweepSteps([32, 512], 3000, 200)).toEqual([
      { rateKbps: 32, intervalMs: 50, size: 200, count: 60 },
      { rateKbps: 512, intervalMs: 3.125, size: 200, count: 960 },
    ]);
  });

  it('finds the knee of a policer: the first step short of 90 %, the policed rate the median delivered from there on', () => {
    const steps = sweepSteps([32, 64, 128, 256, 512], 1000, 200);
    // A 100 kbit/s (payload) policer: steps at or below it whole, above it 100 kbit/s back.
    const received: number[] = [];
    let first = 0;
    for (const s of steps) {
      const keep = Math.min(s.count, Math.round((100 * s.count) / s.rateKbps));
      for (let i = 0; i < keep; i++) received.push(first + Math.floor((i * s.count) / keep));
      first += s.count;
    }
    const r = analyseSweep(steps, received, { headerBytes: 28 });
    expect(r.steps.map((s) => [s.offeredKbps, s.received, s.sent])).toEqual([
      [32, 20, 20],
      [64, 40, 40],
      [128, 63, 80],
      [256, 63, 160],
      [512, 63, 320],
    ]);
    expect(r.knee).toEqual({ atKbps: 128, lastCleanKbps: 64, policedKbps: 100.8, policedIpKbps: expect.closeTo(100.8 * (228 / 200), 9) });
  });

  it('no knee when every step comes back', () => {
    const steps = sweepSteps([32, 64], 1000, 200);
    expect(analyseSweep(steps, Array.from({ length: 60 }, (_, i) => i), { headerBytes: 28 }).knee).toBeNull();
  });
});
