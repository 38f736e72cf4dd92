import { z } from 'zod';
import { ipPortSchema } from '../../net/address.js';
import { FRAME_MS, MEDIA_SHAPES, SERVICE_SHAPES } from '../../protocol/media-packet.js';
import type { PhaseSettings } from '../../types.js';
import { turnCredentialProblem, turnReleaseParams } from '../turn-params.js';

const shape = z.enum(MEDIA_SHAPES);

/** The `media` phase's parameters in a catalogue; the thresholds default to src/media/stats.ts. */
export const mediaParams = z
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
    /** With `via: turn`: the wait for each allocation's release, kept in the phase's timeout. */
    ...turnReleaseParams,
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.via === 'turn' && !p.peer) ctx.addIssue({ code: 'custom', message: 'via: turn needs peer: the reflector as IP:PORT', path: ['peer'] });
    if (p.via === 'direct' && p.peer) ctx.addIssue({ code: 'custom', message: 'peer is only for via: turn (direct goes to the target)', path: ['peer'] });
    if (p.via === 'direct' && p.credential) ctx.addIssue({ code: 'custom', message: 'credential is only for via: turn', path: ['credential'] });
    if (p.controlOf && p.shape !== 'random') ctx.addIssue({ code: 'custom', message: 'controlOf is only for shape: random', path: ['controlOf'] });
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

/**
 * The least phaseTimeout a media phase with these params needs: stream + longest drain + margin,
 * and through a TURN relay the release of its allocations too.
 */
export function mediaTimeoutNeededMs(p: Pick<MediaParams, 'durationMs' | 'frameMs' | 'drainMs'> & Partial<Pick<MediaParams, 'via' | 'releaseWaitMs'>>): number {
  const release = p.via === 'turn' ? (p.releaseWaitMs ?? turnReleaseParams.releaseWaitMs.parse(undefined)) : 0;
  return packetCount(p) * p.frameMs + (p.drainMs ?? MAX_DRAIN_MS) + REPORT_WAIT_MS + END_MARGIN_MS + release;
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
    `phaseTimeout ${planned.timeoutMs} ms is shorter than the stream (${packetCount(p) * p.frameMs} ms) + drain (${p.drainMs ?? MAX_DRAIN_MS} ms) + ` +
    `report (${REPORT_WAIT_MS} ms) + ${END_MARGIN_MS} ms${release} = ${needed} ms: raise the target's phaseTimeout`
  );
}
