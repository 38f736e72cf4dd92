/**
 * Is the service-shaped stream treated differently from the control shape on the same path?
 * The Wehe method (Li et al., "A Large-Scale Analysis of Deployed Traffic Differentiation
 * Practices", SIGCOMM 2019; code: NEU-SNS/wehe-py3 src/testHypothesis.py `doTests`): run the
 * service's traffic and its bit-inverted twin back to back, take a sample of a performance metric
 * from each, and call them different only when two tests agree:
 *
 * - Area test: the area between the two samples' empirical quantile functions (the horizontal
 *   area between their CDFs), normalised by a maximum; fires at ≥ 0.10.
 * - Two-sample Kolmogorov-Smirnov test; fires at p < 0.05.
 *
 * Both fire: `differentiated`. Neither: `not_differentiated`. Exactly one, or too few samples:
 * `inconclusive` (Wehe's rule as issue 7 states it). A difference in the magnitude of the
 * metric (area) without statistical support (KS), or the reverse, is not enough to accuse a
 * network of discriminating.
 *
 * Deviations from Wehe's code, and why:
 * - The area is normalised by the larger of the two sample maxima (Wehe: the smaller). Ours
 *   stays in [0, 1] and is defined when one sample is all zeros, which is exactly what a
 *   cut-off or blocked media stream yields and what Wehe's TCP throughput never does.
 * - Wehe integrates the quantile difference numerically from y = 0.001; the empirical quantile
 *   functions are step functions, so we integrate them exactly over (0, 1].
 * - Wehe adds a jackknife check of the KS result (sub-samples, NetPolice); with the 20-odd
 *   one-second bins of a call-length stream sub-samples are too small to mean much, so the
 *   inconclusive band carries that caution instead.
 *
 * The metric for media streams (`compareStreams`) is the delivered rate per timeline bin
 * (packets per second), the analogue of Wehe's throughput samples.
 */
import type { FailureCode } from '../failure.js';
import type { StreamStats } from './stats.js';

export type DifferentiationResult = 'differentiated' | 'not_differentiated' | 'inconclusive';

export interface KsResult {
  /** sup |F1(x) − F2(x)|. */
  readonly d: number;
  /** Effective sample size n·m/(n+m). */
  readonly ne: number;
  /** Stephens-corrected argument (√Ne + 0.12 + 0.11/√Ne)·D. */
  readonly lambda: number;
  /** Asymptotic p-value Q_KS(lambda). */
  readonly p: number;
}

/**
 * Q_KS(λ) = 1 − K(λ), the survival function of Kolmogorov's limiting distribution
 * (Kolmogorov 1933):
 *   Q_KS(λ) = 2 Σ_{j≥1} (−1)^{j−1} exp(−2 j² λ²)                    (converges fast for λ ≥ 1.18)
 *   1 − Q_KS(λ) = (√(2π)/λ) Σ_{j≥1} exp(−(2j−1)² π² / (8 λ²))         (converges fast for λ < 1.18)
 * Both series and the 1.18 switch point as in Numerical Recipes, 3rd ed. (Press et al. 2007),
 * "Kolmogorov-Smirnov distribution" (§6.14).
 */
export function kolmogorovQ(lambda: number): number {
  if (Number.isNaN(lambda)) return Number.NaN;
  if (lambda <= 0) return 1;
  if (lambda < 1.18) {
    const y = Math.exp((-Math.PI * Math.PI) / (8 * lambda * lambda));
    // Σ y^((2j−1)²): five terms reach double precision for λ < 1.18.
    let sum = 0;
    for (let j = 1; j <= 5; j++) sum += Math.pow(y, (2 * j - 1) ** 2);
    return Math.min(1, Math.max(0, 1 - (Math.sqrt(2 * Math.PI) / lambda) * sum));
  }
  const x = Math.exp(-2 * lambda * lambda);
  let sum = 0;
  for (let j = 1; j <= 5; j++) sum += (j % 2 === 1 ? 1 : -1) * Math.pow(x, j * j);
  return Math.min(1, Math.max(0, 2 * sum));
}

/**
 * Two-sample KS test with the asymptotic p-value: D = sup|F1 − F2| over the pooled sample
 * (ties handled by stepping both CDFs past a shared value), Ne = n·m/(n + m), and
 * p = Q_KS((√Ne + 0.12 + 0.11/√Ne)·D), the small-sample correction of Stephens (1970) as given
 * in Numerical Recipes, 3rd ed., §14.3 ("Are two distributions different?").
 */
export function ksTwoSample(a: readonly number[], b: readonly number[]): KsResult {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return { d: Number.NaN, ne: 0, lambda: Number.NaN, p: Number.NaN };
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < n && j < m) {
    const v = Math.min(x[i] as number, y[j] as number);
    while (i < n && x[i] === v) i++;
    while (j < m && y[j] === v) j++;
    d = Math.max(d, Math.abs(i / n - j / m));
  }
  const ne = (n * m) / (n + m);
  const sq = Math.sqrt(ne);
  const lambda = (sq + 0.12 + 0.11 / sq) * d;
  return { d, ne, lambda, p: kolmogorovQ(lambda) };
}

export interface AreaResult {
  /** ∫₀¹ |Q_service(y) − Q_control(y)| dy / max(max(service), max(control)). */
  readonly area: number;
  /** ∫₀¹ (Q_control(y) − Q_service(y)) dy / the same: > 0 when the control did better. */
  readonly signedArea: number;
  readonly normaliser: number;
}

/**
 * The area between two empirical quantile functions, exactly. Q(y) = x_(⌈y·n⌉) is a step
 * function with steps at k/n; between consecutive steps of either sample both are constant.
 */
export function quantileArea(service: readonly number[], control: readonly number[]): AreaResult {
  const n = service.length;
  const m = control.length;
  if (n === 0 || m === 0) return { area: Number.NaN, signedArea: Number.NaN, normaliser: Number.NaN };
  const s = [...service].sort((p, q) => p - q);
  const c = [...control].sort((p, q) => p - q);
  let i = 0;
  let j = 0;
  let pos = 0;
  let abs = 0;
  let signed = 0;
  while (i < n && j < m) {
    // The next step is at min((i+1)/n, (j+1)/m); compare as integers to keep ties exact.
    const si = (i + 1) * m;
    const cj = (j + 1) * n;
    const next = Math.min((i + 1) / n, (j + 1) / m);
    const width = next - pos;
    const diff = (c[j] as number) - (s[i] as number);
    abs += width * Math.abs(diff);
    signed += width * diff;
    pos = next;
    if (si <= cj) i++;
    if (cj <= si) j++;
  }
  const normaliser = Math.max(s[n - 1] as number, c[m - 1] as number);
  if (!(normaliser > 0)) return { area: 0, signedArea: 0, normaliser };
  return { area: abs / normaliser, signedArea: signed / normaliser, normaliser };
}

export interface DifferentiationOptions {
  /** Wehe's area threshold. */
  readonly areaThreshold?: number;
  /** KS significance level. */
  readonly alpha?: number;
  /** Fewer samples than this on either side: inconclusive. */
  readonly minSamples?: number;
}

export const DEFAULT_DIFFERENTIATION: Required<DifferentiationOptions> = { areaThreshold: 0.1, alpha: 0.05, minSamples: 5 };

export interface SampleComparison {
  readonly result: DifferentiationResult;
  readonly area: AreaResult;
  readonly ks: KsResult;
  readonly areaFires: boolean;
  readonly ksFires: boolean;
  readonly samples: { readonly service: number; readonly control: number };
  /** Why the result is inconclusive, when it is. */
  readonly reason: 'too_few_samples' | 'only_area' | 'only_ks' | null;
}

export function compareSamples(service: readonly number[], control: readonly number[], opts: DifferentiationOptions = {}): SampleComparison {
  const o = { ...DEFAULT_DIFFERENTIATION, ...opts };
  const area = quantileArea(service, control);
  const ks = ksTwoSample(service, control);
  const samples = { service: service.length, control: control.length };
  if (service.length < o.minSamples || control.length < o.minSamples) {
    return { result: 'inconclusive', area, ks, areaFires: false, ksFires: false, samples, reason: 'too_few_samples' };
  }
  const areaFires = area.area >= o.areaThreshold;
  const ksFires = ks.p < o.alpha;
  const result: DifferentiationResult = areaFires && ksFires ? 'differentiated' : !areaFires && !ksFires ? 'not_differentiated' : 'inconclusive';
  const reason = result !== 'inconclusive' ? null : areaFires ? 'only_area' : 'only_ks';
  return { result, area, ks, areaFires, ksFires, samples, reason };
}

/** Delivered packets per second in each complete timeline bin (the last, partial one is left out). */
export function deliveredRateSamples(stats: StreamStats): number[] {
  const { binMs, bins } = stats.timeline;
  return bins.slice(0, -1).map((b) => b.receivedPackets / (binMs / 1000));
}

export interface StreamSide {
  readonly shape: string;
  readonly stats: StreamStats;
  /** The stream's own classification (stats.classifyStream), null when it looked fine. */
  readonly failure: FailureCode | null;
}

export interface StreamComparison extends SampleComparison {
  readonly metric: 'delivered_packets_per_second';
  readonly service: { readonly shape: string; readonly failure: FailureCode | null; readonly lossRatio: number };
  readonly control: { readonly shape: string; readonly failure: FailureCode | null; readonly lossRatio: number };
  /** The service shape failed and the control shape on the same path did not. */
  readonly serviceOnlyFailure: boolean;
  /** One sentence for the evidence, naming both shapes and what each saw. */
  readonly summary: string;
}

/** Compare a service-shaped stream with its control on the same path, in the same cycle. */
export function compareStreams(service: StreamSide, control: StreamSide, opts: DifferentiationOptions = {}): StreamComparison {
  const cmp = compareSamples(deliveredRateSamples(service.stats), deliveredRateSamples(control.stats), opts);
  const serviceOnlyFailure = service.failure !== null && control.failure === null;
  const what = (s: StreamSide) => (s.failure ?? 'ok') + ` (loss ${(100 * s.stats.lossRatio).toFixed(1)} %)`;
  let summary: string;
  if (serviceOnlyFailure) {
    summary = `the ${service.shape}-shaped stream saw ${what(service)} while the ${control.shape} control on the same path saw ${what(control)}: the path treats the service's packets differently`;
  } else if (service.failure !== null && control.failure !== null) {
    summary = `both the ${service.shape}-shaped stream (${what(service)}) and the ${control.shape} control (${what(control)}) failed: the path itself is poor, not selective`;
  } else {
    summary = `${service.shape}: ${what(service)}; ${control.shape} control: ${what(control)}`;
  }
  summary += `; delivered-rate test: ${cmp.result} (area ${fmt(cmp.area.area)}, KS D ${fmt(cmp.ks.d)}, p ${fmtP(cmp.ks.p)})`;
  return {
    ...cmp,
    metric: 'delivered_packets_per_second',
    service: { shape: service.shape, failure: service.failure, lossRatio: service.stats.lossRatio },
    control: { shape: control.shape, failure: control.failure, lossRatio: control.stats.lossRatio },
    serviceOnlyFailure,
    summary,
  };
}

function fmt(v: number): string {
  return Number.isFinite(v) ? v.toFixed(3) : String(v);
}
function fmtP(v: number): string {
  return Number.isFinite(v) ? (v < 1e-4 ? v.toExponential(2) : v.toFixed(4)) : String(v);
}
