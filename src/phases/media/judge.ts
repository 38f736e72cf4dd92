import { round6, roundMs } from '../../evidence.js';
import { classify, type FailureCode } from '../../failure.js';
import type { StreamComparison } from '../../media/differentiation.js';
import { cutDirection, perDirection } from '../../media/direction.js';
import { analyseSweep, type SweepResult, type SweepStep } from '../../media/sweep.js';
import { classifyStream, computeStreamStats, type MediaClassification, type StreamStats } from '../../media/stats.js';
import type { Evidence } from '../../result.js';
import type { MediaParams } from './params.js';
import { opt, type StreamPlan, type StreamRun } from './streams.js';

/** One stream's figures as they go into the record (`evidence.streams[]`); the gauges read them. */
export interface MediaStreamEvidence {
  role: 'service' | 'control';
  shape: string;
  controlOf?: string;
  sent: number;
  received: number;
  lost: number;
  lossRatio: number;
  jitterMs: number;
  quality: { r: number; mos: number; idd: number; ieEff: number; codec: string } | null;
  failure: FailureCode | null;
  cutoff: Record<string, unknown> | null;
  [key: string]: unknown;
}

/** The `media` phase's evidence: the plan of the stream, its paths and every stream's figures. */
export interface MediaEvidence extends Evidence {
  via?: 'direct' | 'turn';
  streams?: MediaStreamEvidence[];
  differentiation?: Record<string, unknown>;
  relays?: Array<Record<string, unknown>>;
}

export interface Judged {
  readonly label: string;
  readonly stats: StreamStats;
  readonly failure: FailureCode | null;
  readonly classification: MediaClassification;
  readonly sweep: SweepResult | null;
  readonly evidence: MediaStreamEvidence;
}

export interface JudgeOptions {
  /** The phase has several destinations: each stream's evidence names its own. */
  readonly named?: boolean;
  /** The stream was a rate sweep with these steps (src/media/sweep.ts): its knee decides. */
  readonly sweep?: readonly SweepStep[] | null;
  /** Over IPv6 (48 bytes of headers a packet, not 28), for the policer's own rate. */
  readonly ipv6?: boolean;
  /** performance.now() at the phase's start: the origin of every offset in the evidence. */
  readonly phaseStartMs?: number;
}

export function judge(run: StreamRun, plan: StreamPlan, p: MediaParams, o: JudgeOptions = {}): Judged {
  const stats = computeStreamStats(run.sent, run.received);
  // From an offset after the stream's first send to one after the phase's start.
  const firstSendMs = run.sent.length > 0 ? Math.min(...run.sent.map((s) => s.sendTimeMs)) : o.phaseStartMs ?? 0;
  const at = (offsetMs: number): number => roundMs(firstSendMs - (o.phaseStartMs ?? firstSendMs) + offsetMs);
  const classified = classifyStream(stats, {
    ...opt('thresholds', p.thresholds),
    ...opt('throttle', p.throttle),
    ...opt('cutoff', p.cutoff),
    frameMs: p.frameMs,
  });
  const sweep = o.sweep ? analyseSweep(o.sweep, run.received.map((r) => r.seq), { headerBytes: o.ipv6 ? 48 : 28 }) : null;
  // A sweep is meant to lose packets above the knee: only nothing back, or a knee, is its finding.
  const classification: MediaClassification = sweep
    ? { ...classified, failure: stats.sent > 0 && stats.received === 0 ? 'media_no_packets' : sweep.knee ? 'media_throttled' : null }
    : classified;
  const { quality, cutoff, throttle, degraded } = classification;
  const evidence: MediaStreamEvidence = {
    role: plan.role,
    shape: plan.shape,
    ...opt('controlOf', plan.controlOf),
    ...(o.named ? { destination: plan.destination.name, location: plan.destination.location } : {}),
    sent: stats.sent,
    received: stats.received,
    lost: stats.lost,
    lossRatio: round6(stats.lossRatio),
    duplicates: stats.duplicates,
    reordered: stats.reordered,
    unexpected: stats.unexpected,
    stray: run.stray,
    bytesSent: stats.bytesSent,
    bytesReceived: stats.bytesReceived,
    bursts: stats.bursts,
    burstRatio: round6(stats.burstRatio),
    jitterMs: roundMs(stats.jitterMs),
    rttMs: stats.rttMs ? mapValues(stats.rttMs, roundMs) : null,
    // Every offset in the record counts from the phase's start (README "Records"): the statistics
    // count from the stream's first send, `streamStartMs` after it.
    streamStartMs: roundMs(at(0)),
    timeline: { binMs: stats.timeline.binMs, bins: stats.timeline.bins.map((b) => ({ ...b, startMs: at(b.startMs) })) },
    lastReceived: stats.lastReceived ? { ...stats.lastReceived, sendOffsetMs: at(stats.lastReceived.sendOffsetMs), recvOffsetMs: at(stats.lastReceived.recvOffsetMs) } : null,
    firstLoss: stats.firstLoss ? { ...stats.firstLoss, sendOffsetMs: at(stats.firstLoss.sendOffsetMs) } : null,
    quality: quality ? { r: roundMs(quality.r), mos: roundMs(quality.mos), idd: roundMs(quality.idd), ieEff: roundMs(quality.ieEff), codec: quality.codec } : null,
    pacing: run.pacing,
    drainMs: run.drainMs,
    ...(run.pathError === null ? {} : { pathError: classify(run.pathError).error }),
    ...directionEvidence(run, stats, classification.failure, p.frameMs),
    ...(sweep ? { sweep: sweepEvidence(sweep) } : {}),
    failure: classification.failure,
    degradedReasons: degraded.reasons,
    cutoff: cutoff ? { ...mapValues(cutoff, (v) => (typeof v === 'number' ? round6(v) : v)), afterMs: at(cutoff.afterMs), lastRecvMs: at(cutoff.lastRecvMs) } : null,
    throttle: throttle ? { ...mapValues(throttle, (v) => (typeof v === 'number' ? round6(v) : v)), fromMs: at(throttle.fromMs) } : null,
  };
  return { label: plan.shape, stats, failure: classification.failure, classification, sweep, evidence };
}

/**
 * What the reflector says of the flow: its report (asked only when echoes were missing), the loss
 * each way, and for a stream that went silent which way it broke (src/media/direction.ts).
 */
function directionEvidence(run: StreamRun, stats: StreamStats, failure: FailureCode | null, frameMs: number): Record<string, unknown> {
  const input = { sent: run.sent, received: run.received, echoes: run.echoes, report: run.report?.report ?? null, rttP50Ms: stats.rttMs?.p50 ?? null, frameMs };
  const per = perDirection(input);
  const out: Record<string, unknown> = {
    perDirection: per ? { ...per, uplink: roundLoss(per.uplink), downlink: roundLoss(per.downlink) } : null,
  };
  if (run.report) {
    const { report, requestsSent, error, traffic } = run.report;
    out.reflectorReport = { answered: report !== null, requestsSent, ...(report ?? {}), ...(error ? { error } : {}), bytesSent: traffic.bytesSent ?? 0, bytesReceived: traffic.bytesReceived ?? 0 };
  }
  if (failure === 'stream_cutoff' || failure === 'media_no_packets') out.cutDirection = cutDirection(input);
  return out;
}

function sweepEvidence(s: SweepResult): Record<string, unknown> {
  return {
    steps: s.steps.map((step) => ({ ...step, deliveredKbps: round6(step.deliveredKbps), deliveredRatio: round6(step.deliveredRatio) })),
    knee: s.knee ? { ...s.knee, policedKbps: round6(s.knee.policedKbps), policedIpKbps: round6(s.knee.policedIpKbps) } : null,
  };
}

function roundLoss<T extends { lossRatio: number | null }>(c: T): T {
  return { ...c, lossRatio: c.lossRatio === null ? null : round6(c.lossRatio) };
}

export function differentiationEvidence(c: StreamComparison): Record<string, unknown> {
  return {
    result: c.result,
    serviceOnlyFailure: c.serviceOnlyFailure,
    metric: c.metric,
    service: c.service,
    control: c.control,
    area: round6(c.area.area),
    signedArea: round6(c.area.signedArea),
    ksD: round6(c.ks.d),
    ksP: c.ks.p,
    areaFires: c.areaFires,
    ksFires: c.ksFires,
    samples: c.samples,
    reason: c.reason,
    summary: c.summary,
  };
}

export function describeStream(j: Judged): string {
  const s = j.stats;
  const parts = [`${s.received}/${s.sent} back`, `loss ${(100 * s.lossRatio).toFixed(1)} %`];
  const c = j.classification.cutoff;
  if (j.failure === 'stream_cutoff' && c) parts.push(`silent after packet ${c.afterPackets} (${c.afterBytesSent} bytes, ${roundMs(c.afterMs)} ms)`);
  const knee = j.sweep?.knee;
  if (j.failure === 'media_throttled' && knee) {
    parts.push(`delivered rate flat at ${knee.policedKbps.toFixed(1)} kbit/s (${knee.policedIpKbps.toFixed(1)} with headers) from the ${knee.atKbps} kbit/s step on`);
  }
  const t = j.classification.throttle;
  if (j.failure === 'media_throttled' && t && !knee) parts.push(`delivered ${(t.deliveredRateBps / 1000).toFixed(1)} of ${(t.sentRateBps / 1000).toFixed(1)} kbit/s`);
  if (j.failure === 'media_degraded') parts.push(`over thresholds: ${j.classification.degraded.reasons.join(', ')}`);
  if (j.classification.quality) parts.push(`MOS ${j.classification.quality.mos.toFixed(2)}`);
  return parts.join(', ');
}

function mapValues<T extends object>(o: T, f: (v: T[keyof T]) => unknown): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v as T[keyof T])]));
}
