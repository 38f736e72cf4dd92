import { randomBytes, randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { parseHostPort } from '../net/address.js';
import { ProbeFailure, classify, type FailureCode } from '../failure.js';
import { compareStreams, type StreamComparison } from '../media/differentiation.js';
import { pacingReport, runPaced, type PacingReport } from '../media/pacer.js';
import { classifyStream, computeStreamStats, percentile, type MediaClassification, type ReceivedPacket, type SentPacket, type StreamStats } from '../media/stats.js';
import { formatEndpoint } from '../net/address.js';
import { RFC8489_RETRANSMISSION, StunClient } from '../net/stun-client.js';
import { TurnClient } from '../net/turn-client.js';
import { dialUdp, type DatagramChannel, type DatagramCounts } from '../net/udp.js';
import {
  FRAME_MS,
  MEDIA_SHAPES,
  SERVICE_SHAPES,
  cryptoRng,
  decodeMediaPacket,
  encodeMediaPacket,
  opusLikeSize,
  type MediaShape,
  type ServiceShape,
} from '../protocol/media-packet.js';
import {
  TRANSPORT_UDP,
  channelNumber,
  getXorMappedAddress,
  getXorRelayedAddress,
  lifetime,
  requestedTransport,
  xorPeerAddress,
} from '../protocol/stun-attributes.js';
import { CHANNEL_MAX, CHANNEL_MIN, METHOD, encodeChannelData } from '../protocol/turn.js';
import { ipPortSchema } from '../net/address.js';
import type { PhaseContext, PhaseDefinition } from './types.js';

/**
 * `media`: a call-like stream to a callprobe reflector and back (design.md §8, issue 7 parts 2-3).
 *
 * One packet every `frameMs` (20 ms: 50 packets/s) for `durationMs`, payload sizes drawn like
 * Opus voice, in one of the shapes of src/protocol/media-packet.ts, paced on the monotonic clock
 * (src/media/pacer.ts, whose own error is in evidence). The reflector echoes each authentic
 * packet, so every number is a round trip on one clock: loss, burst lengths, RFC 3550 jitter,
 * RTT percentiles, reordering, duplicates, the delivered rate per 1 s bin, the last packet that
 * came back (its index, bytes and time), and the E-model R and MOS (src/media/stats.ts). After
 * the last send the phase keeps listening for a drain of 4 × the RTT p99 seen so far (250 ms to
 * 2 s), so packets in flight are not counted as lost.
 *
 * Paths: `direct` (UDP to the reflector: the target is the reflector) or `turn` (the target is a
 * TURN server; an allocation of our own is made with the credentials of the config's `turn`
 * section, a channel bound to `peer`, the reflector, and the stream goes as ChannelData through
 * the relay; the allocation is released at the end). The `turn` phase itself releases its
 * allocation when it ends, so this phase makes its own with the same client (src/net/turn-client.ts).
 *
 * Differentiation (the Wehe method): with `control`, a second stream of that shape (normally
 * `random`, the bit-inverse of the service shape: same sizes, same times, none of its bytes)
 * runs at the same moments on its own socket, over the same path. The comparison
 * (src/media/differentiation.ts) says in one sentence whether the service-shaped stream failed
 * while the control did not; its statistical test is Wehe's rule on the per-second delivered
 * rates: area between the quantile functions ≥ 0.10 and two-sample KS p < 0.05 is
 * `differentiated`, neither is `not_differentiated`, only one is `inconclusive`.
 *
 * Failure: the service stream's classification, by precedence `media_no_packets` >
 * `stream_cutoff` (N = the 1-based index of the last packet that came back, with its bytes and
 * time) > `media_throttled` > `media_degraded` (thresholds as params). A socket error (an ICMP
 * port or host unreachable) ends the path: the stream stops there, `sent` counts only what was
 * really sent, and the phase fails with the error as what it is (`connection_refused`,
 * `host_unreachable`...; `pathError` in the stream's evidence), not as a cut-off or a loss of
 * packets that never left. An error with nothing back is reported likewise.
 */

const shape = z.enum(MEDIA_SHAPES);

const params = z
  .object({
    shape: shape.default('rtp'),
    /** For `shape: random`: the service shape it inverts (default rtp). */
    controlOf: z.enum(SERVICE_SHAPES).optional(),
    /** A second shape sent in parallel on the same path for comparison; `random` inverts `shape`. */
    control: shape.optional(),
    durationMs: z.number().int().min(100).max(600_000).default(20_000),
    frameMs: z.number().min(1).max(1000).default(FRAME_MS),
    /** Listening after the last send; default 4 × RTT p99, 250 ms to 2 s. */
    drainMs: z.number().int().min(0).max(30_000).optional(),
    /** src/media/stats.ts DEFAULT_THRESHOLDS, overridable: when the stream is `media_degraded`. */
    thresholds: z
      .object({
        maxLossRatio: z.number().min(0).max(1).optional(),
        maxBurstPackets: z.number().int().min(1).optional(),
        maxJitterMs: z.number().positive().optional(),
        minMos: z.number().min(1).max(4.5).optional(),
      })
      .strict()
      .optional(),
    /** DEFAULT_THROTTLE: when the delivered rate is capped (`media_throttled`). */
    throttle: z
      .object({
        maxDeliveredRatio: z.number().min(0).max(1).optional(),
        maxDispersion: z.number().min(0).optional(),
        minBins: z.number().int().min(1).optional(),
      })
      .strict()
      .optional(),
    /** DEFAULT_CUTOFF: when silence after packets came back is a `stream_cutoff`. */
    cutoff: z
      .object({
        minTailPackets: z.number().int().min(1).optional(),
        minTailMs: z.number().min(0).optional(),
        maxChance: z.number().min(0).max(1).optional(),
      })
      .strict()
      .optional(),
    via: z.enum(['direct', 'turn']).default('direct'),
    /** With `via: turn`: the reflector, IP:PORT, as the relay's peer. */
    peer: ipPortSchema.optional(),
    /** With `via: turn`: the config's `turn` entry whose credentials to use; default: the target's name. */
    credential: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.via === 'turn' && !p.peer) ctx.addIssue({ code: 'custom', message: 'via: turn needs peer: the reflector as IP:PORT', path: ['peer'] });
    if (p.via === 'direct' && p.peer) ctx.addIssue({ code: 'custom', message: 'peer is only for via: turn (direct goes to the target)', path: ['peer'] });
    if (p.via === 'direct' && p.credential) ctx.addIssue({ code: 'custom', message: 'credential is only for via: turn', path: ['credential'] });
    if (p.controlOf && p.shape !== 'random') ctx.addIssue({ code: 'custom', message: 'controlOf is only for shape: random', path: ['controlOf'] });
  });

type MediaParams = z.infer<typeof params>;

/**
 * The drain after the last send is 4 × the RTT p99 seen so far, within these bounds: below 250 ms
 * a loopback-short RTT would leave no room for scheduling noise; 2 s is five times the 400 ms
 * one-way delay ITU-T G.114 (05/2003) sets as the limit for planning calls, so an echo later than that
 * would be useless to a call anyway.
 */
const MIN_DRAIN_MS = 250;
const MAX_DRAIN_MS = 2000;
/** Both streams' first deadline, a little after setup so neither starts late. */
const START_DELAY_MS = 5;
/** Kept at the end of the phase's timeout for the statistics and the TURN release. */
const END_MARGIN_MS = 300;
const RELEASE_WAIT_MS = 1000;

/** The least phaseTimeout a media phase with these params needs: stream + longest drain + margin. */
export function mediaTimeoutNeededMs(p: Pick<MediaParams, 'durationMs' | 'frameMs' | 'drainMs'>): number {
  return Math.max(1, Math.round(p.durationMs / p.frameMs)) * p.frameMs + (p.drainMs ?? MAX_DRAIN_MS) + END_MARGIN_MS;
}

export const mediaPhase: PhaseDefinition<typeof params> = {
  name: 'media',
  params,
  controlPhase: 'media',
  needs: 'addresses',
  check: (p, { timeoutMs, settings }) => {
    if (!settings.mediaKey) return 'needs media.reflectorKey in the config (the key of the reflector)';
    const needed = mediaTimeoutNeededMs(p);
    return timeoutMs < needed ? `phaseTimeout ${timeoutMs} ms is shorter than the stream, its drain and a margin (${needed} ms): raise the target's phaseTimeout` : null;
  },
  async run(ctx) {
    const started = performance.now();
    const p = ctx.params;
    const key = ctx.settings.mediaKey;
    if (!key) throw new ProbeFailure('internal_error', 'the media phase needs media.reflectorKey in the config (the key of the reflector)');
    const count = Math.max(1, Math.round(p.durationMs / p.frameMs));
    const streamMs = count * p.frameMs;
    const needed = mediaTimeoutNeededMs(p);
    if (needed > ctx.timeoutMs) {
      throw new ProbeFailure(
        'internal_error',
        `phaseTimeout ${ctx.timeoutMs} ms is shorter than the stream (${streamMs} ms) + drain (${p.drainMs ?? MAX_DRAIN_MS} ms) + ${END_MARGIN_MS} ms: raise the target's phaseTimeout`,
        { timeoutMs: ctx.timeoutMs },
      );
    }
    const deadline = started + ctx.timeoutMs - END_MARGIN_MS;
    const address = ctx.state.addresses?.[0];
    if (address === undefined) throw new ProbeFailure('internal_error', 'media phase has no address to send to');
    ctx.transport = 'udp';
    ctx.endpointUsed = formatEndpoint(address, ctx.endpoint.port);
    Object.assign(ctx.evidence, { via: p.via, frameMs: p.frameMs, durationMs: streamMs, packetsPlanned: count });

    const plans = streamPlans(p);
    const paths: MediaPath[] = [];
    try {
      // One socket (and with TURN one allocation) per stream: each is its own flow, as two calls are.
      for (let i = 0; i < plans.length; i++) {
        const path = p.via === 'direct' ? await openDirectPath(ctx, address) : await openTurnPath(ctx, address, p);
        paths.push(path);
      }
      if (p.via === 'turn') ctx.evidence.relays = paths.map((x) => x.describe);
      const sizes = Array.from({ length: count }, () => opusLikeSize(cryptoRng));
      const startMs = performance.now() + START_DELAY_MS;
      const setupMs = round(startMs - START_DELAY_MS - started);
      ctx.evidence.setupMs = setupMs;
      if (startMs + streamMs > deadline) {
        // A slow TURN setup left too little of the timeout: say so rather than measure a stream cut by it.
        throw new ProbeFailure('generic_timeout_error', `setting up the path took ${setupMs} ms: the ${streamMs} ms stream no longer fits in phaseTimeout`, {
          timeoutMs: ctx.timeoutMs,
        });
      }
      const runs = await Promise.all(
        paths.map((path, i) => runStream(path, { ...plans[i]!, key, sizes, frameMs: p.frameMs, startMs, drainMs: p.drainMs, deadline, signal: ctx.signal })),
      );
      const sides = runs.map((run, i) => judge(run, plans[i]!, p));
      ctx.evidence.streams = sides.map((s) => s.evidence);
      const service = sides[0]!;
      let comparison: StreamComparison | null = null;
      if (sides[1]) {
        const control = sides[1];
        comparison = compareStreams(
          { shape: service.label, stats: service.stats, failure: service.failure },
          { shape: control.label, stats: control.stats, failure: control.failure },
        );
        ctx.evidence.differentiation = differentiationEvidence(comparison);
      }
      // The path failed mid-stream: that is the finding, whatever the packets before it show.
      if (runs[0]!.pathError !== null) throw runs[0]!.pathError;
      if (service.failure && paths[0]!.error) throw paths[0]!.error;
      if (service.failure) {
        throw new ProbeFailure(service.failure, `${service.label} stream: ${service.failure} (${describe(service)})${comparison ? `; ${comparison.summary}` : ''}`);
      }
    } finally {
      await Promise.all(paths.map((x) => x.close()));
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Streams

interface StreamPlan {
  readonly role: 'service' | 'control';
  readonly shape: MediaShape;
  /** For `random`: the service shape inverted. */
  readonly controlOf?: ServiceShape;
}

function isServiceShape(s: MediaShape): s is ServiceShape {
  return (SERVICE_SHAPES as readonly string[]).includes(s);
}

function streamPlans(p: MediaParams): StreamPlan[] {
  const base = (s: MediaShape, of?: ServiceShape): StreamPlan['controlOf'] => (s === 'random' ? (of ?? 'rtp') : undefined);
  const plans: StreamPlan[] = [{ role: 'service', shape: p.shape, ...opt('controlOf', base(p.shape, p.controlOf)) }];
  if (p.control) {
    // The control inverts the service shape itself, so only the bytes differ (Wehe).
    const of = isServiceShape(p.shape) ? p.shape : p.controlOf;
    plans.push({ role: 'control', shape: p.control, ...opt('controlOf', base(p.control, of)) });
  }
  return plans;
}

function opt<K extends string, V>(k: K, v: V | undefined): Partial<Record<K, V>> {
  return v === undefined ? {} : ({ [k]: v } as Record<K, V>);
}

interface StreamRun {
  readonly sent: SentPacket[];
  readonly received: ReceivedPacket[];
  readonly pacing: PacingReport;
  /** Datagrams that came back but are not authentic echoes of this stream. */
  readonly stray: number;
  readonly drainMs: number;
  /** The socket error that ended the path before the last packet was sent, or null. */
  readonly pathError: unknown;
}

interface StreamOptions extends StreamPlan {
  readonly key: Uint8Array;
  readonly sizes: readonly number[];
  readonly frameMs: number;
  readonly startMs: number;
  readonly drainMs: number | undefined;
  readonly deadline: number;
  readonly signal: AbortSignal;
}

/** Sends the paced stream on `path`, records every authentic echo, and drains. */
async function runStream(path: MediaPath, o: StreamOptions): Promise<StreamRun> {
  const flowId = randomBytes(4).readUInt32BE(0);
  const sent: SentPacket[] = [];
  const received: ReceivedPacket[] = [];
  let stray = 0;
  path.onPacket((data, atMs) => {
    let d;
    try {
      d = decodeMediaPacket(data, o.key);
    } catch {
      stray++;
      return;
    }
    if (d.flowId !== flowId) stray++;
    else received.push({ seq: d.seq, sendTimeMs: d.sendTimeUs / 1000, recvTimeMs: atMs, size: data.length });
  });
  // A send the path refuses (its socket failed) ends the stream: nothing more can leave or come back.
  const failed = new AbortController();
  const pacingErrors: number[] = [];
  let pacing: PacingReport;
  try {
    pacing = await runPaced(
      { count: o.sizes.length, intervalMs: o.frameMs, startMs: o.startMs, signal: AbortSignal.any([o.signal, failed.signal]) },
      (seq, scheduledMs) => {
        // The send time in the packet is the time it leaves: the RTT then excludes the pacer's error.
        const sendTimeUs = Math.round(performance.now() * 1000);
        const packet = encodeMediaPacket({
          shape: o.shape,
          ...opt('controlOf', o.controlOf),
          flowId,
          seq,
          sendTimeUs,
          payloadSize: o.sizes[seq]!,
          key: o.key,
          rng: cryptoRng,
        });
        if (!path.send(packet)) return failed.abort();
        sent.push({ seq, sendTimeMs: sendTimeUs / 1000, size: packet.length });
        pacingErrors.push(sendTimeUs / 1000 - scheduledMs);
      },
    );
  } catch (err) {
    if (!failed.signal.aborted || o.signal.aborted) throw err;
    // Cut short: the pacer's own report is lost with its loop; the same measure over the sends made.
    const pathError = await path.failure();
    return { sent, received: [...received], pacing: pacingReport(pacingErrors), stray, drainMs: 0, pathError };
  }
  const rtts = received.map((r) => r.recvTimeMs - r.sendTimeMs).sort((a, b) => a - b);
  const p99 = rtts.length > 0 ? percentile(rtts, 99) : Number.POSITIVE_INFINITY;
  const wanted = o.drainMs ?? Math.min(MAX_DRAIN_MS, Math.max(MIN_DRAIN_MS, 4 * p99));
  const drainMs = Math.max(0, Math.min(wanted, o.deadline - performance.now()));
  await sleep(drainMs, undefined, { signal: o.signal });
  return { sent, received: [...received], pacing, stray, drainMs: round(drainMs), pathError: null };
}

interface Judged {
  readonly label: string;
  readonly stats: StreamStats;
  readonly failure: FailureCode | null;
  readonly classification: MediaClassification;
  readonly evidence: Record<string, unknown>;
}

function judge(run: StreamRun, plan: StreamPlan, p: MediaParams): Judged {
  const stats = computeStreamStats(run.sent, run.received);
  const classification = classifyStream(stats, {
    ...opt('thresholds', p.thresholds),
    ...opt('throttle', p.throttle),
    ...opt('cutoff', p.cutoff),
    frameMs: p.frameMs,
  });
  const { quality, cutoff, throttle, degraded } = classification;
  const evidence: Record<string, unknown> = {
    role: plan.role,
    shape: plan.shape,
    ...opt('controlOf', plan.controlOf),
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
    jitterMs: round(stats.jitterMs),
    rttMs: stats.rttMs ? mapValues(stats.rttMs, round) : null,
    timeline: stats.timeline,
    lastReceived: stats.lastReceived ? { ...stats.lastReceived, sendOffsetMs: round(stats.lastReceived.sendOffsetMs), recvOffsetMs: round(stats.lastReceived.recvOffsetMs) } : null,
    quality: quality ? { r: round(quality.r), mos: round(quality.mos), idd: round(quality.idd), ieEff: round(quality.ieEff), codec: quality.codec } : null,
    pacing: run.pacing,
    drainMs: run.drainMs,
    ...(run.pathError === null ? {} : { pathError: classify(run.pathError).error }),
    failure: classification.failure,
    degradedReasons: degraded.reasons,
    cutoff: cutoff ? mapValues(cutoff, (v) => (typeof v === 'number' ? round6(v) : v)) : null,
    throttle: throttle ? mapValues(throttle, (v) => (typeof v === 'number' ? round6(v) : v)) : null,
  };
  return { label: plan.shape, stats, failure: classification.failure, classification, evidence };
}

function differentiationEvidence(c: StreamComparison): Record<string, unknown> {
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

function describe(j: Judged): string {
  const s = j.stats;
  const parts = [`${s.received}/${s.sent} back`, `loss ${(100 * s.lossRatio).toFixed(1)} %`];
  const c = j.classification.cutoff;
  if (j.failure === 'stream_cutoff' && c) parts.push(`silent after packet ${c.afterPackets} (${c.afterBytesSent} bytes, ${round(c.afterMs)} ms)`);
  const t = j.classification.throttle;
  if (j.failure === 'media_throttled' && t) parts.push(`delivered ${(t.deliveredRateBps / 1000).toFixed(1)} of ${(t.sentRateBps / 1000).toFixed(1)} kbit/s`);
  if (j.failure === 'media_degraded') parts.push(`over thresholds: ${j.classification.degraded.reasons.join(', ')}`);
  if (j.classification.quality) parts.push(`MOS ${j.classification.quality.mos.toFixed(2)}`);
  return parts.join(', ');
}

// ---------------------------------------------------------------------------------------------
// Paths

interface MediaPath {
  /** Hands a packet to the path; false, and nothing sent, once its socket failed or closed. */
  send(packet: Buffer): boolean;
  /** Where datagrams from the reflector go, with their arrival time (performance.now()). */
  onPacket(handler: (data: Buffer, atMs: number) => void): void;
  /** A socket error (ICMP unreachable...) that ended reception, if any. */
  readonly error: unknown;
  /** After a refused send: the error that ended the path. */
  failure(): Promise<unknown>;
  readonly describe: Record<string, unknown>;
  close(): Promise<void>;
}

/** UDP straight to the reflector (the target). Counters go to the phase's evidence. */
async function openDirectPath(ctx: PhaseContext<MediaParams>, address: string): Promise<MediaPath> {
  const life = new AbortController();
  const channel = await dialUdp({ address, port: ctx.endpoint.port, guard: ctx.guard, signal: AbortSignal.any([ctx.signal, life.signal]), counts: ctx.evidence as DatagramCounts });
  ctx.state.cleanups.push(() => channel.close());
  let handler: (data: Buffer, atMs: number) => void = () => {};
  const path = {
    error: null as unknown,
    describe: { localAddress: formatEndpoint(channel.localAddress, channel.localPort) },
    send: (packet: Buffer) => channel.send(packet),
    onPacket: (h: typeof handler) => {
      handler = h;
    },
    failure: () => ended,
    close: async () => {
      life.abort(new ProbeFailure('interrupted', 'media phase finished'));
      channel.close();
    },
  };
  // The channel's one reader: it ends with the error that ended the channel.
  const ended = (async (): Promise<unknown> => {
    try {
      for (;;) {
        const data = await channel.receive();
        handler(data, performance.now());
      }
    } catch (err) {
      if (!life.signal.aborted && !ctx.signal.aborted) path.error = err;
      return err;
    }
  })();
  return path;
}

/**
 * Through a TURN relay (RFC 8656): Allocate (long-term credentials), ChannelBind to the reflector
 * (which also installs the permission, §12), then media as ChannelData both ways; Refresh with
 * LIFETIME 0 at the end (§8). The reflector sees the relay as the source.
 */
async function openTurnPath(ctx: PhaseContext<MediaParams>, address: string, p: MediaParams): Promise<MediaPath> {
  const name = p.credential ?? ctx.target;
  const credential = ctx.settings.turnCredentials?.get(name);
  if (!credential) throw new ProbeFailure('internal_error', `no TURN credentials named "${name}" in the config's turn section`);
  const peerHp = parseHostPort(p.peer!, 0)!;
  const peer = { family: isIP(peerHp.host) === 6 ? ('IPv6' as const) : ('IPv4' as const), address: peerHp.host, port: peerHp.port };
  ctx.evidence.peer = formatEndpoint(peer.address, peer.port);
  const life = new AbortController();
  const signal = AbortSignal.any([ctx.signal, life.signal]);
  const channel = await dialUdp({ address, port: ctx.endpoint.port, guard: ctx.guard, signal, counts: ctx.evidence as DatagramCounts });
  ctx.state.cleanups.push(() => channel.close());
  const number = CHANNEL_MIN + randomInt(CHANNEL_MAX - CHANNEL_MIN + 1);
  let handler: (data: Buffer, atMs: number) => void = () => {};
  const client = new StunClient({ kind: 'datagram', channel }, signal, {
    onChannelData: (ch, data) => {
      if (ch === number) handler(data, performance.now());
    },
  });
  const session = new TurnClient(client, RFC8489_RETRANSMISSION, credential);
  const describe: Record<string, unknown> = { localAddress: formatEndpoint(channel.localAddress, channel.localPort), channel: number };
  let allocated = false;
  const release = async (): Promise<void> => {
    if (!allocated) return;
    allocated = false;
    try {
      await session.request(METHOD.REFRESH, [lifetime(0)], AbortSignal.timeout(RELEASE_WAIT_MS));
      describe.released = true;
    } catch (err) {
      describe.released = false;
      describe.releaseError = classify(err).code;
    }
  };
  try {
    const attributes = [requestedTransport(TRANSPORT_UDP)];
    const response = (await session.challenge(attributes, signal)) ?? (await session.request(METHOD.ALLOCATE, attributes, signal));
    allocated = true;
    const relayed = getXorRelayedAddress(response);
    const mapped = getXorMappedAddress(response);
    if (relayed) describe.relayedAddress = formatEndpoint(relayed.address, relayed.port);
    if (mapped) describe.mappedAddress = formatEndpoint(mapped.address, mapped.port);
    // The relay will send to the peer on our behalf: it passes our guard like any destination.
    ctx.guard.assert(peer.address);
    await session.request(METHOD.CHANNEL_BIND, [channelNumber(number), xorPeerAddress(peer)], signal);
  } catch (err) {
    await release();
    client.close();
    channel.close();
    throw err;
  }
  return {
    error: null,
    describe,
    // As client.send does, straight on the channel: its answer says whether the datagram left.
    send: (packet) => channel.send(encodeChannelData(number, packet)),
    onPacket: (h) => {
      handler = h;
    },
    failure: () => channelError(channel),
    close: async () => {
      await release();
      client.close();
      life.abort(new ProbeFailure('interrupted', 'media phase finished'));
      channel.close();
    },
  };
}

/**
 * The error that ended a channel read by someone else (the TURN client's reader): once a send was
 * refused the channel has ended, and receive() rejects with that error when no datagram is queued.
 */
async function channelError(channel: DatagramChannel): Promise<unknown> {
  for (;;) {
    try {
      await channel.receive();
    } catch (err) {
      return err;
    }
  }
}

// ---------------------------------------------------------------------------------------------

function mapValues<T extends object>(o: T, f: (v: T[keyof T]) => unknown): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v as T[keyof T])]));
}

/** ms with µs precision. */
function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Ratios to 6 decimals: enough for 1 packet in 10^5, short in records. */
function round6(v: number): number {
  return Number.isFinite(v) ? Math.round(v * 1e6) / 1e6 : v;
}
