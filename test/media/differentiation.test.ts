import { describe, expect, it } from 'vitest';
import {
  compareSamples,
  compareStreams,
  deliveredRateSamples,
  kolmogorovQ,
  ksTwoSample,
  quantileArea,
} from '../../src/media/differentiation.js';
import { classifyStream, computeStreamStats, type SentPacket } from '../../src/media/stats.js';

describe('kolmogorovQ (asymptotic Kolmogorov distribution)', () => {
  // Reference values: scipy.stats.kstwobign.sf(λ) (SciPy 1.17), the same distribution computed
  // by an independent implementation; both series branches are covered (switch at 1.18).
  it.each([
    [0.5, 0.9639452436648751],
    [1.0, 0.26999967167735456],
    [1.17, 0.12939004218561884],
    [1.19, 0.11774229287977166],
    [2.0, 0.0006709252557796953],
  ])('Q(%d) = %d', (lambda, q) => {
    expect(kolmogorovQ(lambda)).toBeCloseTo(q, 14);
  });

  it('reproduces the published critical values K(0.10) = 1.2238, K(0.05) = 1.3581, K(0.01) = 1.6276', () => {
    expect(kolmogorovQ(1.2238)).toBeCloseTo(0.1, 4);
    expect(kolmogorovQ(1.3581)).toBeCloseTo(0.05, 4);
    expect(kolmogorovQ(1.6276)).toBeCloseTo(0.01, 4);
  });

  it('is 1 at and below 0, and decreasing', () => {
    expect(kolmogorovQ(0)).toBe(1);
    expect(kolmogorovQ(-1)).toBe(1);
    expect(kolmogorovQ(0.01)).toBe(1);
    let prev = 1;
    for (let l = 0.05; l < 3; l += 0.05) {
      const q = kolmogorovQ(l);
      expect(q).toBeLessThanOrEqual(prev);
      prev = q;
    }
  });
});

describe('ksTwoSample', () => {
  it('two disjoint samples of 5: D = 1, Ne = 2.5, p by the Stephens-corrected series', () => {
    const r = ksTwoSample([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]);
    const lambda = Math.sqrt(2.5) + 0.12 + 0.11 / Math.sqrt(2.5);
    const q = 2 * (Math.exp(-2 * lambda ** 2) - Math.exp(-8 * lambda ** 2) + Math.exp(-18 * lambda ** 2));
    expect(r.d).toBe(1);
    expect(r.ne).toBe(2.5);
    expect(r.lambda).toBeCloseTo(lambda, 14);
    expect(r.p).toBeCloseTo(q, 14);
    expect(r.p).toBeCloseTo(0.003781354059370101, 14); // scipy.stats.kstwobign.sf(λ)
  });

  it('steps both CDFs past tied values', () => {
    expect(ksTwoSample([1, 1, 2], [1, 2, 2]).d).toBeCloseTo(1 / 3, 14);
  });

  it('identical samples: D = 0, p = 1', () => {
    expect(ksTwoSample([3, 1, 2], [1, 2, 3])).toMatchObject({ d: 0, p: 1 });
  });

  it('an empty side gives NaN', () => {
    expect(ksTwoSample([], [1]).p).toBeNaN();
  });
});

describe('quantileArea', () => {
  it('constant 1 vs constant 2: area 1, normalised by the larger maximum', () => {
    expect(quantileArea([1, 1, 1, 1], [2, 2, 2, 2])).toEqual({ area: 0.5, signedArea: 0.5, normaliser: 2 });
  });

  it('integrates step quantile functions of different sizes exactly', () => {
    // Q_s: 0 on (0, 1/2], 10 on (1/2, 1]; Q_c: 0, 5, 10 on thirds -> |diff| 5 on (1/3, 2/3]
    const r = quantileArea([0, 10], [0, 5, 10]);
    expect(r.area).toBeCloseTo(5 / 3 / 10, 14);
    expect(r.signedArea).toBeCloseTo(0, 14);
  });

  it('is positive when the control did better, and 0 for all-zero samples', () => {
    expect(quantileArea([0, 0, 0], [50, 50, 50])).toEqual({ area: 1, signedArea: 1, normaliser: 50 });
    expect(quantileArea([0, 0], [0, 0])).toEqual({ area: 0, signedArea: 0, normaliser: 0 });
  });
});

describe('compareSamples (Wehe rule)', () => {
  const twenty = (v: number) => Array.from({ length: 20 }, () => v);

  it('both tests fire: differentiated', () => {
    const r = compareSamples(twenty(0), twenty(50));
    expect(r).toMatchObject({ result: 'differentiated', areaFires: true, ksFires: true, reason: null });
    expect(r.area.area).toBe(1);
    expect(r.ks.d).toBe(1);
  });

  it('neither fires: not differentiated', () => {
    const r = compareSamples([48, 49, 50, 50, 51, 52], [49, 50, 50, 51, 52, 48]);
    expect(r).toMatchObject({ result: 'not_differentiated', areaFires: false, ksFires: false, reason: null });
  });

  it('only the area fires: inconclusive', () => {
    const r = compareSamples([0, 0, 0, 0, 100], [0, 0, 0, 0, 0]);
    expect(r.area.area).toBeCloseTo(0.2, 14);
    expect(r).toMatchObject({ result: 'inconclusive', areaFires: true, ksFires: false, reason: 'only_area' });
  });

  it('only KS fires: inconclusive', () => {
    const r = compareSamples(
      Array.from({ length: 100 }, () => 1000),
      Array.from({ length: 100 }, () => 1001),
    );
    expect(r.ks.p).toBeLessThan(1e-10);
    expect(r.area.area).toBeCloseTo(1 / 1001, 14);
    expect(r).toMatchObject({ result: 'inconclusive', areaFires: false, ksFires: true, reason: 'only_ks' });
  });

  it('too few samples: inconclusive', () => {
    expect(compareSamples([0, 0, 0, 0], twenty(50))).toMatchObject({ result: 'inconclusive', reason: 'too_few_samples' });
  });
});

describe('compareStreams', () => {
  const sent: SentPacket[] = Array.from({ length: 1000 }, (_, seq) => ({ seq, sendTimeMs: seq * 20, size: 120 }));
  const echo = (keep: (seq: number) => boolean) =>
    sent.filter((s) => keep(s.seq)).map((s) => ({ seq: s.seq, sendTimeMs: s.sendTimeMs, recvTimeMs: s.sendTimeMs + 5, size: s.size }));
  const side = (shape: string, keep: (seq: number) => boolean) => {
    const stats = computeStreamStats(sent, echo(keep));
    return { shape, stats, failure: classifyStream(stats).failure };
  };

  it('samples the delivered rate of each complete bin', () => {
    expect(deliveredRateSamples(side('rtp', () => true).stats)).toEqual(Array.from({ length: 19 }, () => 50));
  });

  it('service cut after 1 s while the inverted control flows: differentiated, and says so', () => {
    const service = side('whatsapp', (seq) => seq < 50);
    const control = side('random', () => true);
    const r = compareStreams(service, control);
    expect(service.failure).toBe('stream_cutoff');
    expect(control.failure).toBeNull();
    expect(r.result).toBe('differentiated');
    expect(r.serviceOnlyFailure).toBe(true);
    expect(r.metric).toBe('delivered_packets_per_second');
    expect(r.service).toEqual({ shape: 'whatsapp', failure: 'stream_cutoff', lossRatio: 0.95 });
    expect(r.control).toEqual({ shape: 'random', failure: null, lossRatio: 0 });
    expect(r.summary).toContain('the whatsapp-shaped stream saw stream_cutoff (loss 95.0 %) while the random control on the same path saw ok (loss 0.0 %)');
    expect(r.summary).toContain('delivered-rate test: differentiated');
  });

  it('service dropped entirely: differentiated', () => {
    const r = compareStreams(side('rtp', () => false), side('random', () => true));
    expect(r.service.failure).toBe('media_no_packets');
    expect(r.result).toBe('differentiated');
  });

  it('both shapes cut alike: not differentiated, the path is poor', () => {
    const r = compareStreams(side('rtp', (seq) => seq < 50), side('random', (seq) => seq < 50));
    expect(r.result).toBe('not_differentiated');
    expect(r.serviceOnlyFailure).toBe(false);
    expect(r.summary).toContain('the path itself is poor, not selective');
  });

  it('both clean: not differentiated', () => {
    const r = compareStreams(side('telegram', () => true), side('random', () => true));
    expect(r.result).toBe('not_differentiated');
    expect(r.summary.startsWith('telegram: ok (loss 0.0 %); random control: ok (loss 0.0 %)')).toBe(true);
  });
});
