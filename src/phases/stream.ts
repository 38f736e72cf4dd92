import { z } from 'zod';
import { size } from '../units.js';
import { ProbeFailure } from '../failure.js';
import { hexPrefix, roundMs } from '../evidence.js';
import {
  DEFAULT_STREAM_MAX_BYTES,
  STREAM_PROOF_LENGTH,
  encodeFrame,
  encodeStreamRequest,
  refusalReason,
  type StreamRefusalReason,
} from '../protocol/reflector.js';
import { MEDIA_KEY_NEEDED } from './media/params.js';
import { checkedSetting, converse, websocketBefore } from './kit.js';
import type { Evidence } from '../result.js';
import type { PhaseDefinition } from './types.js';

/**
 * Why 4 s without a byte is a freeze: a working path that loses a segment recovers within one
 * retransmission timeout, which RFC 6298 §2 starts at 1 s and Linux keeps at or above 200 ms
 * (TCP_RTO_MIN), doubling per consecutive loss (§5.5). 4 s of silence is three consecutive
 * losses of the same retransmission at an RTO of 0.5 s (0.5 + 1 + 2 s), which a lossy but
 * working path does not produce, and it leaves room in the default 10 s phase timeout.
 */
const DEFAULT_STALL_MS = 4000;

const params = z
  .object({
    /**
     * How many bytes to ask the reflector for (default 256 KiB, far beyond the 15-20 KB freezes
     * seen); at most what a reflector serves by default (its streamMaxBytes, 4 MiB).
     */
    bytes: size.default(256 * 1024),
    /** No byte for this long, the connection still open: `stream_cutoff`. */
    stallMs: z.number().int().min(100).max(60_000).default(DEFAULT_STALL_MS),
  })
  .strict()
  .refine((p) => p.bytes >= 1 && p.bytes <= DEFAULT_STREAM_MAX_BYTES, {
    message: `bytes must be 1 B to ${DEFAULT_STREAM_MAX_BYTES / 1024 / 1024} MiB (the most a reflector serves by default: its streamMaxBytes)`,
    path: ['bytes'],
  });

const STALL = Symbol('stall');

const REFUSAL_TEXT: Readonly<Record<StreamRefusalReason, string>> = {
  too_large: 'more bytes than its streamMaxBytes',
  rate_limited: 'its streamsPerMinute for this source are used up',
};

/**
 * `stream`: over the TCP or TLS connection the earlier phases opened to a callprobe reflector,
 * ask for N bytes (an authenticated request, src/reflector/protocol.ts) and watch them arrive.
 * This is how the "freeze after 15-20 KB" technique shows (`stream_cutoff`, docs/architecture.md#failure-taxonomy): the
 * connection stays open, no RST, no FIN, and data simply stops. Evidence says at which byte
 * offset (`cutoffAtBytes`, counting every byte of the reply, as a censor's byte counter does) and
 * when (`cutoffAtMs` after the request) it stopped.
 *
 * Outcomes: all bytes arrived: ok (with the throughput); data came, then nothing for `stallMs`:
 * `stream_cutoff`; nothing at all within `stallMs`: `generic_timeout_error`; FIN before the end:
 * `eof_error`; RST: `connection_reset`; the reflector's authenticated refusal for this request
 * (N above its streamMaxBytes, or its streamsPerMinute used up): `proto_error` with `refusal`
 * in evidence; a reply that starts with neither the proof nor a refusal for this request:
 * `proto_mismatch` (something else answered).
 */
/** What the `stream` phase records (beside the counted traffic); the cut-off gauge reads it. */
export interface StreamEvidence extends Evidence {
  requestedBytes?: number;
  streamBytes?: number;
  cutoffAtBytes?: number;
  cutoffAtMs?: number | null;
  lastDataMs?: number | null;
  proofVerified?: boolean;
  throughputBps?: number;
}

export const streamPhase: PhaseDefinition<typeof params, 'connection', StreamEvidence> = {
  name: 'stream',
  params,
  controlPhase: 'tcp',
  needs: 'connection',
  // The TCP cut-off per transport (tcp, tls) as the `shape` of the stream cut-off gauge.
  gauges: (r) =>
    r.transport ? [{ gauge: 'stream_cutoff_bytes', shape: r.transport, value: r.failure === 'stream_cutoff' ? (r.evidence.cutoffAtBytes ?? 0) : 0 }] : [],
  check: (_p, planned) => websocketBefore('stream', planned) ?? (planned.settings.mediaKey ? null : MEDIA_KEY_NEEDED),
  async run(ctx, { connection }) {
    const key = checkedSetting(ctx.settings.mediaKey, 'media.reflectorKey');
    const { bytes, stallMs } = ctx.params;
    const ev = ctx.evidence;
    Object.assign(ev, { requestedBytes: bytes, stallMs, streamBytes: 0, lastDataMs: null, proofVerified: false });
    const conversation = converse(ctx, connection);
    const request = encodeStreamRequest(bytes, key);
    const want = STREAM_PROOF_LENGTH + bytes;
    conversation.send(encodeFrame(request.bytes));
    const t0 = performance.now();
    let got = 0;
    let head = Buffer.alloc(0);
    while (got < want) {
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([
        conversation.receive(),
        new Promise<typeof STALL>((resolve) => {
          timer = setTimeout(() => resolve(STALL), stallMs);
        }),
      ]).finally(() => clearTimeout(timer));
      if (chunk === STALL) {
        const waited = roundMs(performance.now() - t0);
        if (got === 0) {
          throw new ProbeFailure('generic_timeout_error', `no byte of the stream came back within ${stallMs} ms of the request`, { waitedMs: waited });
        }
        ev.cutoffAtBytes = got;
        ev.cutoffAtMs = ev.lastDataMs;
        throw new ProbeFailure(
          'stream_cutoff',
          `the stream stopped after ${got} of ${want} bytes (${ev.lastDataMs} ms after the request); nothing for ${stallMs} ms, no FIN, no RST`,
        );
      }
      got += chunk.length;
      ev.lastDataMs = roundMs(performance.now() - t0);
      if (head.length < STREAM_PROOF_LENGTH) {
        head = Buffer.concat([head, chunk.subarray(0, STREAM_PROOF_LENGTH - head.length)]);
        if (head.length === STREAM_PROOF_LENGTH) {
          const refusal = refusalReason(head, request);
          if (refusal) {
            throw new ProbeFailure('proto_error', `the reflector refused the stream request: ${REFUSAL_TEXT[refusal]}`, { refusal });
          }
          if (!head.equals(request.proof)) {
            throw new ProbeFailure('proto_mismatch', 'the reply does not start with the reflector’s proof for our request: something else answered', {
              replyHeadHex: hexPrefix(head),
            });
          }
          ev.proofVerified = true;
        }
      }
      ev.streamBytes = Math.max(0, got - STREAM_PROOF_LENGTH);
    }
    const seconds = (performance.now() - t0) / 1000;
    ev.throughputBps = Math.round((8 * bytes) / seconds);
    if (got > want) ev.extraBytes = got - want;
  },
};
