/**
 * A simplified ITU-T G.107 E-model: the transmission rating R and its MOS estimate from what a
 * media stream measures (one-way delay, packet loss, burstiness) for a codec profile.
 *
 *   R = R0 − Idd(Ta) − Ie,eff          (G.107 (06/2015) §7.1, R = Ro − Is − Id − Ie,eff + A, with A = 0)
 *
 * Every other impairment (noise, loudness, sidetone, echo, quantisation) is left at the G.107
 * default values, for which the recommendation gives R = 93.2 (§7.7, "default values"): that is
 * R0 here. The same simplification, with the same constant, is the one WAND's amplet2 uses in
 * its udpstream test (wandnz/amplet2 src/tests/udpstream/mos.c and mos.h, DEFAULT_R_VALUE 93.2),
 * the tool this measurement follows.
 *
 * This module is arithmetic only; it lives in protocol/ beside the codecs because, like them, it
 * is a published formula turned into a pure function.
 */

/** G.107 (06/2015) §7.7: R with every parameter at its default value (previously 94.2). */
export const R_DEFAULT = 93.2;
/** G.107 (06/2015) Table 1 defaults: minimum perceivable delay mT (ms) and delay sensitivity sT. */
export const DEFAULT_MIN_PERCEIVABLE_DELAY_MS = 100;
export const DEFAULT_DELAY_SENSITIVITY = 1;
/** G.107 eq. 7-29: the asymptote Ie,eff reaches at 100 % loss. */
const IE_EFF_ASYMPTOTE = 95;

/** A codec's equipment impairment Ie and packet-loss robustness Bpl (G.107 eq. 7-29). */
export interface CodecProfile {
  readonly name: string;
  readonly ie: number;
  readonly bpl: number;
  readonly source: string;
}

export const CODEC_PROFILES = {
  /** G.711 without packet-loss concealment. */
  g711: {
    name: 'g711',
    ie: 0,
    bpl: 4.3,
    source: 'ITU-T G.113 Appendix I, Tables I.1 (Ie) and I.3 (Bpl, random loss); as in amplet2 mos.h LOSS_ROBUSTNESS_G711',
  },
  /** G.711 with the concealment of G.711 Appendix I. */
  'g711-plc': {
    name: 'g711-plc',
    ie: 0,
    bpl: 25.1,
    source: 'ITU-T G.113 Appendix I, Tables I.1 (Ie) and I.3 (Bpl, random loss); as in amplet2 mos.h LOSS_ROBUSTNESS_G711_PLC',
  },
  /**
   * Opus voice, as the calls we imitate send it. ITU-T publishes no Ie/Bpl for Opus (G.113
   * Appendix I predates it), so this is a stated proxy: G.711 with PLC, i.e. a codec with no
   * impairment of its own at the narrowband scale and good concealment. Opus at 24-64 kbit/s
   * is at least that good, so the proxy errs towards a better score; the point of the MOS here
   * is to rank paths, not to predict a listening test.
   */
  'opus-like': {
    name: 'opus-like',
    ie: 0,
    bpl: 25.1,
    source: 'proxy: G.711 with PLC values (ITU-T G.113 Appendix I); no published Opus values',
  },
} as const satisfies Record<string, CodecProfile>;

export type CodecName = keyof typeof CODEC_PROFILES;

export interface DelayOptions {
  /** mT, ms. */
  readonly minPerceivableDelayMs?: number;
  /** sT. */
  readonly delaySensitivity?: number;
}

/**
 * Idd, the impairment due to absolute one-way (mouth-to-ear) delay Ta, G.107 (06/2015) eq. 7-27
 * and 7-28:
 *   Ta ≤ mT: Idd = 0
 *   Ta > mT: Idd = 25 {(1 + X^(6·sT))^(1/(6·sT)) − 3 (1 + [X/3]^(6·sT))^(1/(6·sT)) + 2},
 *            X = log(Ta/mT) / log 2
 * With the defaults (mT = 100 ms, sT = 1) this is the long-standing Idd of earlier editions
 * (exponent 6). Note: amplet2's mos.c writes the exponent as (6 − sT), i.e. 5 at the default;
 * we follow the recommendation.
 */
export function delayImpairment(oneWayDelayMs: number, opts: DelayOptions = {}): number {
  const mT = opts.minPerceivableDelayMs ?? DEFAULT_MIN_PERCEIVABLE_DELAY_MS;
  const sT = opts.delaySensitivity ?? DEFAULT_DELAY_SENSITIVITY;
  if (!(oneWayDelayMs > mT)) return 0;
  const x = Math.log(oneWayDelayMs / mT) / Math.log(2);
  const e = 6 * sT;
  return 25 * (Math.pow(1 + Math.pow(x, e), 1 / e) - 3 * Math.pow(1 + Math.pow(x / 3, e), 1 / e) + 2);
}

/**
 * Ie,eff, the effective equipment impairment under packet loss, G.107 (06/2015) eq. 7-29:
 *   Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl)
 * with Ppl the loss in percent and BurstR the burst ratio: 1 for random loss, > 1 for bursty
 * loss (G.107, the clause defining Ie,eff). A measured ratio below 1 (loss more regular than random, e.g. a
 * deterministic drop of one packet in N) is outside what G.107 describes and is taken as 1,
 * which gives the larger impairment of the two.
 */
export function effectiveEquipmentImpairment(lossRatio: number, burstRatio: number, codec: CodecProfile): number {
  const ppl = 100 * clamp(lossRatio, 0, 1);
  if (ppl === 0) return codec.ie;
  const burstR = Number.isFinite(burstRatio) && burstRatio > 1 ? burstRatio : 1;
  return codec.ie + (IE_EFF_ASYMPTOTE - codec.ie) * (ppl / (ppl / burstR + codec.bpl));
}

export interface QualityInput {
  /** Ta: mouth-to-ear delay, ms. */
  readonly oneWayDelayMs: number;
  /** 0..1. */
  readonly lossRatio: number;
  /** G.107 BurstR; 1 when loss is random or absent. */
  readonly burstRatio: number;
  readonly codec?: CodecProfile;
  readonly delay?: DelayOptions;
}

export interface QualityEstimate {
  readonly r: number;
  readonly mos: number;
  readonly idd: number;
  readonly ieEff: number;
  readonly codec: string;
}

/** R = R0 − Idd − Ie,eff (G.107 §7.1 with the defaults of §7.7 and A = 0). */
export function rFactor(input: QualityInput): number {
  const codec = input.codec ?? CODEC_PROFILES['opus-like'];
  return R_DEFAULT - delayImpairment(input.oneWayDelayMs, input.delay) - effectiveEquipmentImpairment(input.lossRatio, input.burstRatio, codec);
}

/**
 * MOS (conversational quality, estimated) from R, G.107 (06/2015) Annex B (as amplet2's
 * calculate_itu_mos cites it):
 *   R < 0: 1;  0 < R < 100: 1 + 0.035 R + 7·10⁻⁶ R (R − 60)(100 − R);  R > 100: 4.5
 * (the middle formula gives 1 at R = 0 and 4.5 at R = 100, so the pieces meet).
 */
export function mosFromR(r: number): number {
  if (Number.isNaN(r)) return Number.NaN;
  if (r <= 0) return 1;
  if (r >= 100) return 4.5;
  return 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r);
}

export function estimateQuality(input: QualityInput): QualityEstimate {
  const codec = input.codec ?? CODEC_PROFILES['opus-like'];
  const idd = delayImpairment(input.oneWayDelayMs, input.delay);
  const ieEff = effectiveEquipmentImpairment(input.lossRatio, input.burstRatio, codec);
  const r = R_DEFAULT - idd - ieEff;
  return { r, mos: mosFromR(r), idd, ieEff, codec: codec.name };
}

function clamp(v: number, lo: number, hi: number): number {
  if (Number.isNaN(v)) return lo;
  return Math.min(hi, Math.max(lo, v));
}
