import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { roundMs } from '../../evidence.js';
import { pacingReport, runPaced, type PacingReport } from '../../media/pacer.js';
import { percentile, type ReceivedPacket, type SentPacket } from '../../media/stats.js';
import { SERVICE_SHAPES, cryptoRng, decodeMediaEcho, encodeMediaPacket, type MediaShape, type ReceiveCounts, type ServiceShape } from '../../protocol/media-packet.js';
import { MAX_DRAIN_MS, MIN_DRAIN_MS, type MediaParams } from './params.js';
import type { TargetLocation } from '../../types.js';
import type { MediaPath } from './paths.js';
import type { ReportOutcome } from './report.js';

/**
 * The streams of one media phase: the service-shaped one and, with `control`, its comparison
 * stream, each paced on the monotonic clock on its own path and drained after the last send.
 */

/** Where a stream goes: the target (first), or another reflector of the phase's `reflectors`. */
export interface Destination {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly location: TargetLocation;
}

export interface StreamPlan {
  readonly role: 'service' | 'control';
  readonly shape: MediaShape;
  /** For `random`: the service shape inverted. */
  readonly controlOf?: ServiceShape;
  readonly destination: Destination;
}

function isServiceShape(s: MediaShape): s is ServiceShape {
  return (SERVICE_SHAPES as readonly string[]).includes(s);
}

/** The shapes the phase sends as services: `shapes`, or the one `shape` (default rtp). */
export function serviceShapes(p: Pick<MediaParams, 'shape' | 'shapes'>): MediaShape[] {
  return p.shapes ?? [p.shape ?? 'rtp'];
}

/**
 * Every stream of the phase: to each destination (the target first), each shape and, with
 * `control`, its control. The first is the primary stream (the first shape to the target), the
 * second its control when there is one.
 */
export function streamPlans(p: MediaParams, destinations: readonly Destination[]): StreamPlan[] {
  const base = (s: MediaShape, of?: ServiceShape): StreamPlan['controlOf'] => (s === 'random' ? (of ?? 'rtp') : undefined);
  const plans: StreamPlan[] = [];
  for (const destination of destinations) {
    for (const shape of serviceShapes(p)) {
      plans.push({ role: 'service', shape, destination, ...opt('controlOf', base(shape, p.controlOf)) });
      if (p.control) {
        // The control inverts the service shape itself, so only the bytes differ (Wehe).
        const of = isServiceShape(shape) ? shape : p.controlOf;
        plans.push({ role: 'control', shape: p.control, destination, ...opt('controlOf', base(p.control, of)) });
      }
    }
  }
  return plans;
}

/** `{ [k]: v }`, or nothing when v is undefined (exactOptionalPropertyTypes-safe spreading). */
export function opt<K extends string, V>(k: K, v: V | undefined): Partial<Record<K, V>> {
  return v === undefined ? {} : ({ [k]: v } as Record<K, V>);
}

/** An echo that came back, with what the reflector had received of the flow when it echoed it. */
export interface EchoedPacket extends ReceivedPacket {
  readonly reflector: ReceiveCounts;
}

export interface StreamRun {
  readonly flowId: number;
  readonly sent: SentPacket[];
  readonly received: EchoedPacket[];
  /** Every authentic echo datagram that arrived, duplicates included: the downlink as a censor counts it. */
  readonly echoes: { readonly packets: number; readonly bytes: number };
  /** The reflector's answer, after the stream, to "what did you receive of this flow?". */
  readonly report: ReportOutcome | null;
  readonly pacing: PacingReport;
  /** Datagrams that came back but are not authentic echoes of this stream. */
  readonly stray: number;
  readonly drainMs: number;
  /** The socket error that ended the path before the last packet was sent, or null. */
  readonly pathError: unknown;
}

export interface StreamOptions extends StreamPlan {
  readonly key: Uint8Array;
  /** The payload size of each packet, by sequence number. */
  readonly sizes: readonly number[];
  /** Paced runs one after the other (one for a call-like stream, one per rate for a sweep). */
  readonly steps: ReadonlyArray<{ readonly count: number; readonly intervalMs: number }>;
  readonly startMs: number;
  readonly drainMs: number | undefined;
  readonly deadline: number;
  readonly signal: AbortSignal;
  /** Asks the reflector for its counts of this flow, from a new socket (./report.ts). */
  readonly askReport: (flowId: number) => Promise<ReportOutcome>;
}

/** Sends the paced stream on `path`, records every authentic echo, and drains. */
export async function runStream(path: MediaPath, o: StreamOptions): Promise<StreamRun> {
  const flowId = randomBytes(4).readUInt32BE(0);
  const sent: SentPacket[] = [];
  // Send times by sequence: the echo carries the reflector's counts, the RTT comes from our own record.
  const sentAt = new Map<number, number>();
  const received: EchoedPacket[] = [];
  const echoes = { packets: 0, bytes: 0 };
  let stray = 0;
  path.onPacket((data, atMs) => {
    let d;
    try {
      d = decodeMediaEcho(data, o.key);
    } catch {
      stray++;
      return;
    }
    const sendTimeMs = sentAt.get(d.seq);
    if (d.flowId !== flowId || sendTimeMs === undefined) return void stray++;
    echoes.packets++;
    echoes.bytes += data.length;
    received.push({ seq: d.seq, sendTimeMs, recvTimeMs: atMs, size: data.length, reflector: d.received });
  });
  // A send the path refuses (its socket failed) ends the stream: nothing more can leave or come back.
  const failed = new AbortController();
  const pacingErrors: number[] = [];
  const signal = AbortSignal.any([o.signal, failed.signal]);
  let pacing: PacingReport;
  try {
    let first = 0;
    let startMs = o.startMs;
    for (const step of o.steps) {
      const base = first;
      await runPaced({ count: step.count, intervalMs: step.intervalMs, startMs, signal }, (i, scheduledMs) => {
        const seq = base + i;
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
        sentAt.set(seq, sendTimeUs / 1000);
        pacingErrors.push(sendTimeUs / 1000 - scheduledMs);
      });
      first += step.count;
      startMs += step.count * step.intervalMs;
    }
    pacing = pacingReport(pacingErrors);
  } catch (err) {
    if (!failed.signal.aborted || o.signal.aborted) throw err;
    // Cut short: the pacer's own report is lost with its loop; the same measure over the sends made.
    const pathError = await path.failure();
    return { flowId, sent, received: [...received], echoes: { ...echoes }, report: null, pacing: pacingReport(pacingErrors), stray, drainMs: 0, pathError };
  }
  const rtts = received.map((r) => r.recvTimeMs - r.sendTimeMs).sort((a, b) => a - b);
  const p99 = rtts.length > 0 ? percentile(rtts, 99) : Number.POSITIVE_INFINITY;
  const wanted = o.drainMs ?? Math.min(MAX_DRAIN_MS, Math.max(MIN_DRAIN_MS, 4 * p99));
  const drainMs = Math.max(0, Math.min(wanted, o.deadline - performance.now()));
  await sleep(drainMs, undefined, { signal: o.signal });
  const got = { received: [...received], echoes: { ...echoes } };
  // Asked only when something went unanswered: a whole stream back says all there is to say.
  const report = got.received.length < sent.length ? await o.askReport(flowId) : null;
  return { flowId, sent, ...got, report, pacing, stray, drainMs: roundMs(drainMs), pathError: null };
}
