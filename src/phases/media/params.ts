import { z } from 'zod';
import { ipPortSchema } from '../../net/address.js';
import { sweepSteps, type SweepStep } from '../../media/sweep.js';
import { FRAME_MS, MAX_PAYLOAD_SIZE, MEDIA_SHAPES, MIN_PAYLOAD_SIZE, SERVICE_SHAPES, mediaPacketLength } from '../../protocol/media-packet.js';
import type { PhaseSettings } from '../../types.js';
import { turnCredentialProblem, turnReleaseParams } from '../turn-params.js';

const shape = z.enum(MEDIA_SHAPES);
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Another reflector the same streams go to, at the same moments, for the diagnosis (src/media/diagnosis.ts). */
const destination = z
  .object({
    name: z.string().regex(NAME, 'lower-case letters, digits, - and _ (it names the destination in records)'),
    address: ipPortSchema,
    location: z.enum(['domestic', 'foreign']),
  })
  .strict();

/** The `media` phase's parameters in a catalogue; the thresholds default to src/media/stats.ts. */
export const mediaParams = z
  .object({
    /** One shape (default rtp), or `shapes` for several service shapes at once. */
    shape: shape.optional(),
    shapes: z
      .array(z.enum(SERVICE_SHAPES))
      .min(1)
      .refine((s) => new Set(s).size === s.length, 'each shape once')
      .optional(),
    /** More reflectors that get the same streams (the target is the first destination, at its catalogue `location`). */
    reflectors: z.array(destination).min(1).max(4).optional(),
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
    /**
     * Policer discovery instead of a call-like stream: the rate steps up, `stepMs` at each of
     * `ratesKbps` (kbit/s of UDP payload), in packets of one size (`packetBytes` of payload, as
     * `opusLikeSize` would draw it: the trailer included); src/media/sweep.ts finds the knee.
     */
    sweep: z
      .object({
        ratesKbps: z
          .array(z.number().positive().max(20_000))
          .min(2)
          .max(12)
          .refine((r) => r.every((x, i) => i === 0 || x > r[i - 1]!), 'rates must go up')
          .default([32, 64, 128, 256, 512]),
        stepMs: z.number().int().min(500).max(30_000).default(3000),
        packetBytes: z.number().int().min(MIN_PAYLOAD_SIZE).max(MAX_PAYLOAD_SIZE).default(160),
      })
      .strict()
      .optional(),
    via: z.enum(['direct', 'turn']).default('direct'),
    /** With `via: turn`: the reflector, IP:PORT, as the relay's peer. */
    peer: ipPortSchema.optional(),
    /** With `via: turn`: the config's `turn` entry whose credentials to use; default: the target's name. */
    credential: z.string().min(1).optional(),
    /** With `via: turn`: the wait for each allocation's release, kept in the phase's timeout. */
    ...turnReleaseParams,
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.via === 'turn' && !p.peer) ctx.addIssue({ code: 'custom', message: 'via: turn needs peer: the reflector as IP:PORT', path: ['peer'] });
    if (p.via === 'direct' && p.peer) ctx.addIssue({ code: 'custom', message: 'peer is only for via: turn (direct goes to the target)', path: ['peer'] });
    if (p.via === 'direct' && p.credential) ctx.addIssue({ code: 'custom', message: 'credential is only for via: turn', path: ['credential'] });
    if (p.controlOf && p.shape !== 'random') ctx.addIssue({ code: 'custom', message: 'controlOf is only for shape: random', path: ['controlOf'] });
    if (p.shape && p.shapes) ctx.addIssue({ code: 'custom', message: 'give shape or shapes, not both', path: ['shapes'] });
    if (p.via === 'turn' && p.reflectors) ctx.addIssue({ code: 'custom', message: 'reflectors are for via: direct (each is a destination of its own)', path: ['reflectors'] });
    if (p.sweep && (p.control || p.shapes || p.reflectors)) {
      ctx.addIssue({ code: 'custom', message: 'a sweep is one stream: no control, shapes or reflectors with it', path: ['sweep'] });
    }
    const names = (p.reflectors ?? []).map((r) => r.name);
    if (new Set(names).size !== names.length) ctx.addIssue({ code: 'custom', message: 'each reflector needs a name of its own', path: ['reflectors'] });
  });

export type MediaParams = z.infer<typeof mediaParams>;

/** What the plan says when `media` or `stream` is planned without the reflector's key. */
export const MEDIA_KEY_NEEDED = 'needs media.reflectorKey in the config (the key of the reflector)';

/**
 * The drain after the last send is 4 × the RTT p99 seen so far, within these bounds: below 250 ms
 * a loopback-short RTT would leave no room for scheduling noise; 2 s is five times the 400 ms
 * one-way delay ITU-T G.114 (05/2003) sets as the limit for planning calls, so an echo later than that
 * would be useless to a call anyway.
 */
export const MIN_DRAIN_MS = 250;
export const MAX_DRAIN_MS = 2000;
/** Kept at the end of the phase's timeout for the statistics. */
export const END_MARGIN_MS = 300;
/** After the drain, asking the reflector for its counts of a stream that went unanswered (./report.ts). */
export const REPORT_WAIT_MS = 1000;

/** Packets in the stream: one per frame. */
export function packetCount(p: Pick<MediaParams, 'durationMs' | 'frameMs'>): number {
  return Math.max(1, Math.round(p.durationMs / p.frameMs));
}

/** When each stream sends what: call-like frames, or a sweep's steps. */
export interface StreamSchedule {
  /** Paced runs one after the other on the same flow. */
  readonly steps: ReadonlyArray<{ readonly count: number; readonly intervalMs: number }>;
  /** The sweep's steps with their rates, or null for a call-like stream. */
  readonly sweep: SweepStep[] | null;
  readonly count: number;
  readonly streamMs: number;
}

export function streamSchedule(p: Pick<MediaParams, 'durationMs' | 'frameMs' | 'sweep' | 'shape' | 'controlOf'>): StreamSchedule {
  if (!p.sweep) {
    const count = packetCount(p);
    return { steps: [{ count, intervalMs: p.frameMs }], sweep: null, count, streamMs: count * p.frameMs };
  }
  const length = mediaPacketLength(p.shape ?? 'rtp', p.sweep.packetBytes, p.controlOf);
  const steps = sweepSteps(p.sweep.ratesKbps, p.sweep.stepMs, length);
  return {
    steps,
    sweep: steps,
    count: steps.reduce((n, s) => n + s.count, 0),
    streamMs: steps.reduce((n, s) => n + s.count * s.intervalMs, 0),
  };
}

/**
 * The least phaseTimeout a media phase with these params needs: stream + longest drain + margin,
 * and through a TURN relay the release of its allocations too.
 */
export function mediaTimeoutNeededMs(
  p: Pick<MediaParams, 'durationMs' | 'frameMs' | 'drainMs'> & Partial<Pick<MediaParams, 'via' | 'releaseWaitMs' | 'sweep' | 'shape' | 'controlOf'>>,
): number {
  const release = p.via === 'turn' ? (p.releaseWaitMs ?? turnReleaseParams.releaseWaitMs.parse(undefined)) : 0;
  return streamSchedule(p).streamMs + (p.drainMs ?? MAX_DRAIN_MS) + REPORT_WAIT_MS + END_MARGIN_MS + release;
}

/** The plan's check: the key, the TURN credentials a relayed stream names, and a timeout that holds it all. */
export function mediaProblem(p: MediaParams, planned: { target: string; timeoutMs: number; settings: PhaseSettings }): string | null {
  if (!planned.settings.mediaKey) return MEDIA_KEY_NEEDED;
  if (p.via === 'turn') {
    const credentials = turnCredentialProblem(p, planned.target, planned.settings);
    if (credentials) return credentials;
  }
  const needed = mediaTimeoutNeededMs(p);
  if (planned.timeoutMs >= needed) return null;
  const release = p.via === 'turn' ? ` + release (${p.releaseWaitMs} ms)` : '';
  return (
    `phaseTimeout ${planned.timeoutMs} ms is shorter than the stream (${Math.round(streamSchedule(p).streamMs)} ms) + drain (${p.drainMs ?? MAX_DRAIN_MS} ms) + ` +
    `report (${REPORT_WAIT_MS} ms) + ${END_MARGIN_MS} ms${release} = ${needed} ms: raise the target's phaseTimeout`
  );
}
