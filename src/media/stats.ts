/**
 * Statistics of one call-like stream, from what was sent and what came back, and the
 * classification of the stream into the media failure codes (docs/architecture.md#failure-taxonomy, docs/protocols.md#media-measurement):
 * `media_no_packets`, `stream_cutoff`, `media_throttled`, `media_degraded`.
 *
 * Pure: two lists in, numbers out. The phase records every packet it sends ({seq, sendTimeMs,
 * size}) and every authentic echo it receives ({seq, sendTimeMs, recvTimeMs, size}); times are
 * on its monotonic clock, in ms. Because the reflector echoes, every "delay" here is a round
 * trip measured on one clock, so no clock synchronisation is assumed anywhere.
 *
 * The caller must stop collecting only after a drain period (a few RTTs after the last send);
 * otherwise packets still in flight count as lost.
 */
import type { FailureCode } from '../failure.js';
import { CODEC_PROFILES, type CodecProfile, estimateQuality, type QualityEstimate } from '../protocol/emodel.js';

export interface SentPacket {
  readonly seq: number;
  readonly sendTimeMs: number;
  readonly size: number;
}

export interface ReceivedPacket {
  readonly seq: number;
  /** As carried in the packet (its authenticated send timestamp). */
  readonly sendTimeMs: number;
  readonly recvTimeMs: number;
  readonly size: number;
}

export interface TimelineBin {
  /** Bin start, ms after the first send. */
  readonly startMs: number;
  /** Counted by send time. */
  readonly sentPackets: number;
  readonly sentBytes: number;
  /** Counted by receive time (first copies only). */
  readonly receivedPackets: number;
  readonly receivedBytes: number;
}

export interface Percentiles {
  readonly min: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

export interface LastReceived {
  /** The highest sequence number that came back. */
  readonly seq: number;
  /** Packets sent up to and including it (its 1-based position in the sent stream). */
  readonly sentIndex: number;
  /** Distinct packets received up to and including it. */
  readonly receivedCount: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** When it was sent and when it came back, ms after the first send. */
  readonly sendOffsetMs: number;
  readonly recvOffsetMs: number;
}

export interface StreamStats {
  readonly sent: number;
  /** Distinct sent packets that came back at least once. */
  readonly received: number;
  readonly lost: number;
  /** lost / sent; 0 when nothing was sent. */
  readonly lossRatio: number;
  /** Extra copies of a packet already received. */
  readonly duplicates: number;
  /** Authentic packets whose sequence number was never sent in this stream (ignored otherwise). */
  readonly unexpected: number;
  /** RFC 4737 §3.3: arrivals with a sequence number below the highest one seen before them. */
  readonly reordered: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** Sizes of the packets sent, bytes (rms: root mean square, for the throttle test). */
  readonly sizeBytes: { readonly min: number; readonly mean: number; readonly max: number; readonly rms: number } | null;
  readonly bursts: {
    /** Runs of consecutive lost packets (in sequence order). */
    readonly count: number;
    readonly max: number;
    readonly mean: number;
    /** Distinct run lengths with their counts, ascending. At most √(2·sent) entries. */
    readonly histogram: ReadonlyArray<{ readonly length: number; readonly count: number }>;
  };
  /** G.107 BurstR: mean observed burst length over the mean expected under random loss. */
  readonly burstRatio: number;
  /** RFC 3550 §6.4.1 interarrival jitter, ms, after the last arrival. */
  readonly jitterMs: number;
  /** Round-trip times of the first copies, ms; null when nothing came back. */
  readonly rttMs: Percentiles | null;
  readonly timeline: { readonly binMs: number; readonly bins: readonly TimelineBin[] };
  readonly lastReceived: LastReceived | null;
  /** The first packet that did not come back (lowest sequence number), null when none was lost. */
  readonly firstLoss: { readonly seq: number; readonly sendOffsetMs: number; readonly bytesReceivedBefore: number } | null;
  /** Last send, ms after the first send. */
  readonly lastSendOffsetMs: number;
  /** First send to the later of last send and last arrival, ms. */
  readonly durationMs: number;
}

export interface StreamStatsOptions {
  /** Base timeline bin (ms); default 1000. */
  readonly binMs?: number;
  /** At most this many bins: a longer stream gets wider bins, in multiples of `binMs`. Default 120. */
  readonly maxBins?: number;
}

export const DEFAULT_BIN_MS = 1000;
export const DEFAULT_MAX_BINS = 120;

/** Nearest-rank percentile: the smallest sample with at least p % of the samples at or below it. */
export function percentile(sortedAscending: readonly number[], p: number): number {
  if (sortedAscending.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sortedAscending.length));
  return sortedAscending[Math.min(rank, sortedAscending.length) - 1] as number;
}

/**
 * RFC 3550 §6.4.1 and A.8: J(i) = J(i-1) + (|D(i-1,i)| − J(i-1)) / 16, where
 * D(i-1,i) = (R_i − S_i) − (R_{i-1} − S_{i-1}), over packets in arrival order. In ms (A.8 works
 * in timestamp units; the estimator is the same).
 */
export function interarrivalJitter(arrivals: ReadonlyArray<{ readonly sendTimeMs: number; readonly recvTimeMs: number }>): number {
  let jitter = 0;
  let prevTransit: number | null = null;
  for (const a of arrivals) {
    const transit = a.recvTimeMs - a.sendTimeMs;
    if (prevTransit !== null) jitter += (Math.abs(transit - prevTransit) - jitter) / 16;
    prevTransit = transit;
  }
  return jitter;
}

export function computeStreamStats(sentInput: readonly SentPacket[], receivedInput: readonly ReceivedPacket[], opts: StreamStatsOptions = {}): StreamStats {
  // Sent packets by sequence; a repeated seq (a caller bug) keeps its first record.
  const sentBySeq = new Map<number, SentPacket>();
  for (const s of sentInput) if (!sentBySeq.has(s.seq)) sentBySeq.set(s.seq, s);
  const sent = [...sentBySeq.values()].sort((a, b) => a.seq - b.seq);
  const startMs = sent.reduce((m, s) => Math.min(m, s.sendTimeMs), Number.POSITIVE_INFINITY);
  const lastSendMs = sent.reduce((m, s) => Math.max(m, s.sendTimeMs), Number.NEGATIVE_INFINITY);
  const bytesSent = sent.reduce((n, s) => n + s.size, 0);
  const sizeBytes =
    sent.length === 0
      ? null
      : {
          min: sent.reduce((m, s) => Math.min(m, s.size), Number.POSITIVE_INFINITY),
          mean: bytesSent / sent.length,
          max: sent.reduce((m, s) => Math.max(m, s.size), 0),
          rms: Math.sqrt(sent.reduce((n, s) => n + s.size * s.size, 0) / sent.length),
        };

  // Arrival order is receive-time order; ties keep the order given.
  const arrivals = receivedInput.map((r, i) => ({ r, i })).sort((a, b) => a.r.recvTimeMs - b.r.recvTimeMs || a.i - b.i).map((x) => x.r);
  const firstCopies: ReceivedPacket[] = [];
  const seen = new Set<number>();
  let duplicates = 0;
  let unexpected = 0;
  let reordered = 0;
  let highestSeq = -1;
  for (const r of arrivals) {
    if (!sentBySeq.has(r.seq)) {
      unexpected++;
      continue;
    }
    if (seen.has(r.seq)) {
      duplicates++;
      continue;
    }
    seen.add(r.seq);
    firstCopies.push(r);
    if (r.seq < highestSeq) reordered++;
    else highestSeq = r.seq;
  }

  const received = firstCopies.length;
  const lost = sent.length - received;
  const lossRatio = sent.length === 0 ? 0 : lost / sent.length;
  const bytesReceived = firstCopies.reduce((n, r) => n + r.size, 0);

  // Loss runs in sequence order.
  const runs = new Map<number, number>();
  let run = 0;
  for (const s of sent) {
    if (seen.has(s.seq)) {
      if (run > 0) runs.set(run, (runs.get(run) ?? 0) + 1);
      run = 0;
    } else run++;
  }
  if (run > 0) runs.set(run, (runs.get(run) ?? 0) + 1);
  const histogram = [...runs.entries()].sort((a, b) => a[0] - b[0]).map(([length, count]) => ({ length, count }));
  const burstCount = histogram.reduce((n, h) => n + h.count, 0);
  const burstMax = histogram.reduce((m, h) => Math.max(m, h.length), 0);
  const burstMean = burstCount === 0 ? 0 : lost / burstCount;
  // G.107: under random loss with ratio p, runs are geometric with mean 1/(1 − p).
  const burstRatio = burstCount === 0 || lossRatio >= 1 ? 1 : burstMean * (1 - lossRatio);

  const rtts = firstCopies.map((r) => r.recvTimeMs - r.sendTimeMs).sort((a, b) => a - b);
  const rttMs: Percentiles | null =
    rtts.length === 0
      ? null
      : {
          min: rtts[0] as number,
          p50: percentile(rtts, 50),
          p95: percentile(rtts, 95),
          p99: percentile(rtts, 99),
          max: rtts[rtts.length - 1] as number,
          mean: rtts.reduce((a, b) => a + b, 0) / rtts.length,
        };

  const lastArrivalMs = firstCopies.reduce((m, r) => Math.max(m, r.recvTimeMs), Number.NEGATIVE_INFINITY);
  const durationMs = sent.length === 0 ? 0 : Math.max(lastSendMs, lastArrivalMs) - startMs;
  const timeline = buildTimeline(sent, firstCopies, startMs, durationMs, opts);

  let lastReceived: LastReceived | null = null;
  if (received > 0) {
    const top = firstCopies.reduce((a, b) => (b.seq > a.seq ? b : a));
    const upTo = sent.filter((s) => s.seq <= top.seq);
    lastReceived = {
      seq: top.seq,
      sentIndex: upTo.length,
      receivedCount: received,
      bytesSent: upTo.reduce((n, s) => n + s.size, 0),
      bytesReceived,
      sendOffsetMs: (sentBySeq.get(top.seq) as SentPacket).sendTimeMs - startMs,
      recvOffsetMs: top.recvTimeMs - startMs,
    };
  }

  const firstLost = sent.find((s) => !seen.has(s.seq));
  const firstLoss = firstLost
    ? {
        seq: firstLost.seq,
        sendOffsetMs: firstLost.sendTimeMs - startMs,
        bytesReceivedBefore: firstCopies.reduce((n, r) => n + (r.seq < firstLost.seq ? r.size : 0), 0),
      }
    : null;

  return {
    sent: sent.length,
    received,
    lost,
    lossRatio,
    duplicates,
    unexpected,
    reordered,
    bytesSent,
    bytesReceived,
    sizeBytes,
    bursts: { count: burstCount, max: burstMax, mean: burstMean, histogram },
    burstRatio,
    jitterMs: interarrivalJitter(firstCopies),
    rttMs,
    timeline,
    lastReceived,
    firstLoss,
    lastSendOffsetMs: sent.length === 0 ? 0 : lastSendMs - startMs,
    durationMs,
  };
}

function buildTimeline(
  sent: readonly SentPacket[],
  received: readonly ReceivedPacket[],
  startMs: number,
  durationMs: number,
  opts: StreamStatsOptions,
): StreamStats['timeline'] {
  const base = opts.binMs ?? DEFAULT_BIN_MS;
  const maxBins = opts.maxBins ?? DEFAULT_MAX_BINS;
  if (!(base > 0) || !Number.isInteger(maxBins) || maxBins < 1) throw new RangeError('timeline needs binMs > 0 and maxBins ≥ 1');
  if (sent.length === 0) return { binMs: base, bins: [] };
  // Widen bins by a whole factor so that floor(duration / binMs) + 1 ≤ maxBins.
  const needed = Math.floor(durationMs / base) + 1;
  const binMs = base * Math.ceil(needed / maxBins);
  const count = Math.floor(durationMs / binMs) + 1;
  const bins = Array.from({ length: count }, (_, i) => ({ startMs: i * binMs, sentPackets: 0, sentBytes: 0, receivedPackets: 0, receivedBytes: 0 }));
  const at = (t: number) => bins[Math.min(count - 1, Math.max(0, Math.floor((t - startMs) / binMs)))] as (typeof bins)[number];
  for (const s of sent) {
    const b = at(s.sendTimeMs);
    b.sentPackets++;
    b.sentBytes += s.size;
  }
  for (const r of received) {
    const b = at(r.recvTimeMs);
    b.receivedPackets++;
    b.receivedBytes += r.size;
  }
  return { binMs, bins };
}

// ---------------------------------------------------------------------------------------------
// Classification

export interface CutoffOptions {
  /** At least this many packets sent after the last one that came back. Default 25 (0.5 s at 50 pps). */
  readonly minTailPackets?: number;
  /** And at least this long between sending that one and the last send. Default 500 ms. */
  readonly minTailMs?: number;
  /**
   * And random loss at the rate seen before the silence would produce a silence this long with
   * probability at most this (lossBefore^tailPackets). Default 1e-6.
   */
  readonly maxChance?: number;
}

export interface CutoffResult {
  readonly cutoff: boolean;
  /** N: packets sent up to and including the last one that came back (its 1-based index). */
  readonly afterPackets: number;
  /** Distinct packets that came back before the silence (≤ afterPackets). */
  readonly receivedPackets: number;
  /** Bytes sent up to and including it, and bytes that came back. */
  readonly afterBytesSent: number;
  readonly afterBytesReceived: number;
  /** When that last packet was sent, and when it came back, ms after the first send. */
  readonly afterMs: number;
  readonly lastRecvMs: number;
  /** Sent after it with nothing back: packets and ms of sending. */
  readonly tailPackets: number;
  readonly tailMs: number;
  /** Loss ratio up to the last packet that came back. */
  readonly lossBefore: number;
}

export const DEFAULT_CUTOFF: Required<CutoffOptions> = { minTailPackets: 25, minTailMs: 500, maxChance: 1e-6 };

/**
 * Data flowed, then stopped for good. Precisely: at least one packet came back; after the
 * highest sequence number L that came back, the stream sent ≥ minTailPackets more packets over
 * ≥ minTailMs and none of them came back; and the loss ratio p among packets up to L makes such
 * a silence implausible as random loss (p^tail ≤ maxChance). N (`afterPackets`) is L's 1-based
 * index in the sent stream, i.e. how many packets were sent before the path went silent.
 */
export function detectCutoff(stats: StreamStats, opts: CutoffOptions = {}): CutoffResult | null {
  const o = { ...DEFAULT_CUTOFF, ...opts };
  const last = stats.lastReceived;
  if (!last) return null;
  const tailPackets = stats.sent - last.sentIndex;
  const tailMs = stats.lastSendOffsetMs - last.sendOffsetMs;
  const lossBefore = 1 - last.receivedCount / last.sentIndex;
  const chance = Math.pow(lossBefore, tailPackets);
  return {
    cutoff: tailPackets >= o.minTailPackets && tailMs >= o.minTailMs && chance <= o.maxChance,
    afterPackets: last.sentIndex,
    receivedPackets: last.receivedCount,
    afterBytesSent: last.bytesSent,
    afterBytesReceived: last.bytesReceived,
    afterMs: last.sendOffsetMs,
    lastRecvMs: last.recvOffsetMs,
    tailPackets,
    tailMs,
    lossBefore,
  };
}

export interface ThrottleOptions {
  /** Delivered bytes at most this fraction of sent bytes over the steady bins. Default 0.8. */
  readonly maxDeliveredRatio?: number;
  /**
   * Per-bin delivered bytes at most this dispersion relative to independent random loss at the
   * same overall rate (1 ≈ random loss, 0 = the same amount every bin). Default 0.25.
   */
  readonly maxDispersion?: number;
  /** At least this many steady bins to judge. Default 3. */
  readonly minBins?: number;
}

export interface ThrottleResult {
  readonly throttled: boolean;
  readonly bins: number;
  readonly deliveredRatio: number;
  /**
   * Σ(D_i − q·S_i)² / Σ q(1 − q)·n_i·rms²: observed over expected variance of the bytes D_i
   * delivered in bin i (S_i sent in n_i packets, q the delivered fraction of bytes), where the
   * expectation is for packets lost independently with probability 1 − q. ≈ 1 for random loss.
   */
  readonly dispersion: number;
  /** Over the steady bins, per second. */
  readonly sentRateBps: number;
  readonly deliveredRateBps: number;
  /** Where the steady bins start (ms after the first send): after the bin of the first loss. */
  readonly fromMs: number;
  /** Bytes that came back before the first loss: a token bucket's burst, drained at line rate. */
  readonly burstBytes: number;
}

export const DEFAULT_THROTTLE: Required<ThrottleOptions> = { maxDeliveredRatio: 0.8, maxDispersion: 0.25, minBins: 3 };

/**
 * The delivered rate is capped well below the sent rate. Judged on the steady bins (not the
 * first or last, which are partial, none after the last arrival, which belong to a cut-off, and
 * none up to the bin of the first loss): delivered bytes ≤ maxDeliveredRatio of sent bytes, and
 * the bytes delivered per bin are steady (dispersion ≤ maxDispersion). The second condition is
 * what tells a rate limiter (a token bucket, in packets or in bytes, lets the same amount through
 * every second) from random loss of the same average, whose per-bin amounts vary binomially.
 *
 * Before its first loss a token bucket lets its burst through at line rate, and the bin where the
 * burst runs out carries part of it: counting those bins makes a real policer look like erratic
 * loss. As Flach et al. (SIGCOMM 2016, USC-NSL/policing-detection) take the policing rate between
 * the first and the last loss, the steady bins start after the bin holding the first loss; what
 * came back before it is the burst (`burstBytes`). Under random loss the first loss comes within
 * the first second, so this drops at most one bin.
 */
export function detectThrottle(stats: StreamStats, opts: ThrottleOptions = {}): ThrottleResult | null {
  const o = { ...DEFAULT_THROTTLE, ...opts };
  const { binMs, bins } = stats.timeline;
  const lastArrival = stats.lastReceived?.recvOffsetMs ?? -1;
  const firstLossMs = stats.firstLoss?.sendOffsetMs ?? -1;
  const steady = bins.slice(1, -1).filter((b) => b.startMs + binMs <= lastArrival && b.startMs > firstLossMs);
  if (steady.length < o.minBins) return null;
  const sentPackets = steady.reduce((n, b) => n + b.sentPackets, 0);
  const sentBytes = steady.reduce((n, b) => n + b.sentBytes, 0);
  const gotBytes = steady.reduce((n, b) => n + b.receivedBytes, 0);
  if (sentPackets === 0 || sentBytes === 0) return null;
  // The delivered fraction by bytes: a byte bucket favours small packets, so the packet fraction
  // would misstate the amount a bin should carry.
  const q = Math.min(1, gotBytes / sentBytes);
  const rms2 = (stats.sizeBytes?.rms ?? 0) ** 2;
  const expectedVar = steady.reduce((v, b) => v + b.sentPackets * q * (1 - q) * rms2, 0);
  const observed = steady.reduce((v, b) => v + (b.receivedBytes - b.sentBytes * q) ** 2, 0);
  const dispersion = expectedVar > 0 ? observed / expectedVar : Number.POSITIVE_INFINITY;
  const deliveredRatio = gotBytes / sentBytes;
  const seconds = (steady.length * binMs) / 1000;
  return {
    throttled: deliveredRatio <= o.maxDeliveredRatio && deliveredRatio > 0 && dispersion <= o.maxDispersion,
    bins: steady.length,
    deliveredRatio,
    dispersion,
    sentRateBps: (8 * sentBytes) / seconds,
    deliveredRateBps: (8 * gotBytes) / seconds,
    fromMs: steady[0]!.startMs,
    burstBytes: stats.firstLoss?.bytesReceivedBefore ?? stats.bytesReceived,
  };
}

export interface MediaThresholds {
  /** ITU-T G.1010 (11/2001) Table 1, conversational voice: packet loss < 3 %. */
  readonly maxLossRatio?: number;
  /** 5 frames = 100 ms of audio: gaps this long are heard as drop-outs whatever the concealment. */
  readonly maxBurstPackets?: number;
  /** 30 ms: the jitter budget common VoIP planning guides give (e.g. Cisco's QoS design guides). */
  readonly maxJitterMs?: number;
  /** 3.6 ≈ MOS at R = 70, below which G.109 Table 1 rates quality "many users dissatisfied". */
  readonly minMos?: number;
}

export const DEFAULT_THRESHOLDS: Required<MediaThresholds> = { maxLossRatio: 0.03, maxBurstPackets: 5, maxJitterMs: 30, minMos: 3.6 };

export interface DegradedResult {
  readonly degraded: boolean;
  /** Which thresholds were crossed: 'loss', 'burst', 'jitter', 'mos'. */
  readonly reasons: readonly string[];
}

export function checkDegraded(stats: StreamStats, quality: QualityEstimate | null, thresholds: MediaThresholds = {}): DegradedResult {
  const t = { ...DEFAULT_THRESHOLDS, ...thresholds };
  const reasons: string[] = [];
  if (stats.lossRatio > t.maxLossRatio) reasons.push('loss');
  if (stats.bursts.max > t.maxBurstPackets) reasons.push('burst');
  if (stats.jitterMs > t.maxJitterMs) reasons.push('jitter');
  if (quality && quality.mos < t.minMos) reasons.push('mos');
  return { degraded: reasons.length > 0, reasons };
}

/**
 * The E-model's inputs from a stream. Ta (mouth-to-ear delay) = half the 99th-percentile RTT
 * (a symmetric path, and a jitter buffer deep enough to play 99 % of packets) plus one frame of
 * packetisation. Loss is network loss; packets late for that buffer are not counted again.
 */
export function emodelInputs(stats: StreamStats, frameMs = 20): { oneWayDelayMs: number; lossRatio: number; burstRatio: number } | null {
  if (!stats.rttMs) return null;
  return { oneWayDelayMs: stats.rttMs.p99 / 2 + frameMs, lossRatio: stats.lossRatio, burstRatio: stats.burstRatio };
}

export interface ClassifyOptions {
  readonly thresholds?: MediaThresholds;
  readonly cutoff?: CutoffOptions;
  readonly throttle?: ThrottleOptions;
  readonly codec?: CodecProfile;
  readonly frameMs?: number;
}

export interface MediaClassification {
  /** The one failure the stream shows, by precedence; null when it looks like a usable call. */
  readonly failure: Extract<FailureCode, 'media_no_packets' | 'stream_cutoff' | 'media_throttled' | 'media_degraded'> | null;
  readonly quality: QualityEstimate | null;
  readonly cutoff: CutoffResult | null;
  readonly throttle: ThrottleResult | null;
  readonly degraded: DegradedResult;
}

/**
 * Precedence: nothing came back (`media_no_packets`) > it stopped (`stream_cutoff`) > it was
 * capped (`media_throttled`) > it was poor (`media_degraded`). A stream with nothing sent is
 * not classified (failure null): that is the phase's own error, not the path's.
 */
export function classifyStream(stats: StreamStats, opts: ClassifyOptions = {}): MediaClassification {
  const inputs = emodelInputs(stats, opts.frameMs);
  const quality = inputs ? estimateQuality({ ...inputs, codec: opts.codec ?? CODEC_PROFILES['opus-like'] }) : null;
  const cutoff = detectCutoff(stats, opts.cutoff);
  const throttle = detectThrottle(stats, opts.throttle);
  const degraded = checkDegraded(stats, quality, opts.thresholds);
  let failure: MediaClassification['failure'] = null;
  if (stats.sent > 0 && stats.received === 0) failure = 'media_no_packets';
  else if (cutoff?.cutoff) failure = 'stream_cutoff';
  else if (throttle?.throttled) failure = 'media_throttled';
  else if (degraded.degraded) failure = 'media_degraded';
  return { failure, quality, cutoff, throttle, degraded };
}
