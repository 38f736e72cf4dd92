import { describe, expect, it } from 'vitest';
import {
  CODEC_PROFILES,
  delayImpairment,
  effectiveEquipmentImpairment,
  estimateQuality,
  mosFromR,
  R_DEFAULT,
  rFactor,
} from '../../src/protocol/emodel.js';

/** G.107 Annex B, written out independently of the module. */
const mos = (r: number) => 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r);
/** G.107 Idd with mT = 100 ms, sT = 1. */
const idd = (ta: number) => {
  const x = Math.log2(ta / 100);
  return 25 * ((1 + x ** 6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2);
};

describe('mosFromR (G.107 Annex B)', () => {
  it('gives 4.409285824 at the default R = 93.2', () => {
    expect(mosFromR(93.2)).toBeCloseTo(4.409285824, 12);
  });
  it('gives 3.597 at R = 70 (the media_degraded default threshold)', () => {
    expect(mosFromR(70)).toBeCloseTo(3.597, 12);
  });
  it('gives 2.575 at R = 50', () => {
    expect(mosFromR(50)).toBeCloseTo(1 + 1.75 - 0.175, 12);
  });
  it('clamps: 1 at R ≤ 0, 4.5 at R ≥ 100, and the pieces meet', () => {
    expect(mosFromR(-20)).toBe(1);
    expect(mosFromR(0)).toBe(1);
    expect(mosFromR(1e-9)).toBeCloseTo(1, 8);
    expect(mosFromR(100)).toBe(4.5);
    expect(mosFromR(99.999999)).toBeCloseTo(4.5, 6);
    expect(mosFromR(140)).toBe(4.5);
    expect(mosFromR(Number.NaN)).toBeNaN();
  });
});

describe('delayImpairment (G.107 Idd)', () => {
  it('is zero up to the minimum perceivable delay mT = 100 ms', () => {
    expect(delayImpairment(0)).toBe(0);
    expect(delayImpairment(100)).toBe(0);
  });
  it('at 200 ms (X = 1): 25·(2^(1/6) − 3·(1 + 3^-6)^(1/6) + 2) = 3.0444142235…', () => {
    expect(delayImpairment(200)).toBeCloseTo(idd(200), 12);
    expect(delayImpairment(200)).toBeCloseTo(3.0444142235187543, 10);
  });
  it('at 400 ms (X = 2): 24.0700892196…', () => {
    expect(delayImpairment(400)).toBeCloseTo(24.070089219772616, 10);
  });
  it('honours mT and sT', () => {
    expect(delayImpairment(150, { minPerceivableDelayMs: 150 })).toBe(0);
    const x = 1;
    const e = 12; // 6·sT with sT = 2
    expect(delayImpairment(200, { delaySensitivity: 2 })).toBeCloseTo(25 * ((1 + x ** e) ** (1 / e) - 3 * (1 + (x / 3) ** e) ** (1 / e) + 2), 12);
  });
});

describe('effectiveEquipmentImpairment (G.107 Ie,eff)', () => {
  it('is Ie without loss', () => {
    expect(effectiveEquipmentImpairment(0, 1, CODEC_PROFILES['opus-like'])).toBe(0);
  });
  it('1 % random loss, Opus-like (Ie 0, Bpl 25.1): 95·1/(1 + 25.1)', () => {
    expect(effectiveEquipmentImpairment(0.01, 1, CODEC_PROFILES['opus-like'])).toBeCloseTo(95 / 26.1, 12);
  });
  it('5 % random loss, G.711 without PLC (Bpl 4.3): 95·5/(5 + 4.3)', () => {
    expect(effectiveEquipmentImpairment(0.05, 1, CODEC_PROFILES.g711)).toBeCloseTo((95 * 5) / 9.3, 12);
  });
  it('2 % bursty loss (BurstR 2), G.711 with PLC: 95·2/(2/2 + 25.1)', () => {
    expect(effectiveEquipmentImpairment(0.02, 2, CODEC_PROFILES['g711-plc'])).toBeCloseTo((95 * 2) / 26.1, 12);
  });
  it('takes a burst ratio below 1 (or not finite) as random loss', () => {
    const random = effectiveEquipmentImpairment(0.02, 1, CODEC_PROFILES['g711-plc']);
    expect(effectiveEquipmentImpairment(0.02, 0.5, CODEC_PROFILES['g711-plc'])).toBe(random);
    expect(effectiveEquipmentImpairment(0.02, Number.NaN, CODEC_PROFILES['g711-plc'])).toBe(random);
  });
  it('100 % loss: 95·100/(100 + 25.1); clamps loss outside 0..1', () => {
    expect(effectiveEquipmentImpairment(1, 1, CODEC_PROFILES['opus-like'])).toBeCloseTo(9500 / 125.1, 12);
    expect(effectiveEquipmentImpairment(3, 1, CODEC_PROFILES['opus-like'])).toBeCloseTo(9500 / 125.1, 12);
    expect(effectiveEquipmentImpairment(-1, 1, CODEC_PROFILES['opus-like'])).toBe(0);
  });
});

describe('rFactor and estimateQuality', () => {
  it('zero loss, 20 ms: R = 93.2, MOS 4.409…', () => {
    const q = estimateQuality({ oneWayDelayMs: 20, lossRatio: 0, burstRatio: 1 });
    expect(q).toEqual({ r: R_DEFAULT, mos: mosFromR(93.2), idd: 0, ieEff: 0, codec: 'opus-like' });
    expect(q.mos).toBeGreaterThan(4.2);
  });

  it.each([
    // [loss, burstR, codec, expected R]
    [0.01, 1, 'opus-like', 93.2 - 95 / 26.1],
    [0.03, 1, 'opus-like', 93.2 - (95 * 3) / (3 + 25.1)],
    [0.05, 1, 'opus-like', 93.2 - (95 * 5) / (5 + 25.1)],
    [0.05, 3, 'opus-like', 93.2 - (95 * 5) / (5 / 3 + 25.1)],
    [0.02, 1, 'g711', 93.2 - (95 * 2) / (2 + 4.3)],
  ] as const)('loss %d, BurstR %d, %s: R and MOS from the published formula', (loss, burstR, codec, expectedR) => {
    const q = estimateQuality({ oneWayDelayMs: 50, lossRatio: loss, burstRatio: burstR, codec: CODEC_PROFILES[codec] });
    expect(q.r).toBeCloseTo(expectedR, 12);
    expect(q.mos).toBeCloseTo(mos(expectedR), 12);
    expect(rFactor({ oneWayDelayMs: 50, lossRatio: loss, burstRatio: burstR, codec: CODEC_PROFILES[codec] })).toBeCloseTo(expectedR, 12);
  });

  it('G.711 at 2 % random loss matches amplet2 udpstream (R 63.04127, below 100 ms)', () => {
    expect(rFactor({ oneWayDelayMs: 80, lossRatio: 0.02, burstRatio: 1, codec: CODEC_PROFILES.g711 })).toBeCloseTo(63.04126984126984, 10);
  });

  it('adds delay and loss impairments: 200 ms and 1 % loss', () => {
    const q = estimateQuality({ oneWayDelayMs: 200, lossRatio: 0.01, burstRatio: 1 });
    expect(q.idd).toBeCloseTo(idd(200), 12);
    expect(q.r).toBeCloseTo(93.2 - idd(200) - 95 / 26.1, 12);
  });

  it('MOS 4.328… for the 1 % loss case', () => {
    expect(estimateQuality({ oneWayDelayMs: 20, lossRatio: 0.01, burstRatio: 1 }).mos).toBeCloseTo(4.328075382283066, 10);
  });
});
