import { z } from 'zod';
import { size } from '../../units.js';
import { ACK_RECORD_LENGTH } from '../../protocol/stream-records.js';
import { DEFAULT_STREAM_MAX_BYTES, STREAM_DIRECTIONS, encodeFrame, encodeStreamRequest, uploads, type StreamDirection } from '../../protocol/reflector.js';
import { MEDIA_KEY_NEEDED } from '../media/params.js';
import { checkedSetting, converse, websocketBefore } from '../kit.js';
import type { PhaseDefinition } from '../types.js';
import { FlowMeter } from './flow.js';
import type { StreamEvidence, StreamPlan } from './evidence.js';
import { StreamRun } from './run.js';

export type { StreamEvidence } from './evidence.js';

/**
 * Why 4 s without a byte is a freeze: a working path that loses a segment recovers within one
 * retransmission timeout, which RFC 6298 §2 starts at 1 s and Linux keeps at or above 200 ms
 * (TCP_RTO_MIN), doubling per consecutive loss (§5.5). 4 s of silence is three consecutive
 * losses of the same retransmission at an RTO of 0.5 s (0.5 + 1 + 2 s), which a lossy but
 * working path does not produce, and it leaves room in the default 10 s phase timeout.
 */
const DEFAULT_STALL_MS = 4000;

/**
 * The upload's writes: 1 KiB, below the smallest MSS an IPv6 path allows (1280 − 40 − 20 = 1220,
 * RFC 8200 §5) even with TLS's 22 bytes per record, so with TCP_NODELAY each paced write normally
 * leaves as one segment; every 2 ms, so 256 KiB take half a second in 256 segments: far beyond the
 * ~25 packets and 15-20 KB after which flows froze in Russia (net4people/bbs#490; hyperion-cs/
 * dpi-checkers "l4-25", whose prober sends small paced writes for the same reason).
 */
const DEFAULT_WRITE_BYTES = 1024;
const DEFAULT_WRITE_INTERVAL_MS = 2;

const params = z
  .object({
    /** Which way the bytes go: `download` (the reflector sends), `upload` (callprobe sends, the reflector acknowledges), `both`. */
    direction: z.enum(Object.keys(STREAM_DIRECTIONS) as [StreamDirection, ...StreamDirection[]]).default('download'),
    /**
     * How many bytes each way (default 256 KiB, far beyond the 15-20 KB freezes seen); at most
     * what a reflector serves by default (its streamMaxBytes, 4 MiB).
     */
    bytes: size.default(256 * 1024),
    /** No progress this long, the connection still open: `stream_cutoff`. */
    stallMs: z.number().int().min(100).max(60_000).default(DEFAULT_STALL_MS),
    /** Upload and both: the size of each write and the time between writes. */
    writeBytes: z.number().int().min(1).max(16 * 1024).optional(),
    writeIntervalMs: z.number().min(0.1).max(1000).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.bytes < 1 || p.bytes > DEFAULT_STREAM_MAX_BYTES) {
      ctx.addIssue({
        code: 'custom',
        message: `bytes must be 1 B to ${DEFAULT_STREAM_MAX_BYTES / 1024 / 1024} MiB (the most a reflector serves by default: its streamMaxBytes)`,
        path: ['bytes'],
      });
    }
    for (const key of ['writeBytes', 'writeIntervalMs'] as const) {
      if (p[key] !== undefined && !uploads(p.direction)) ctx.addIssue({ code: 'custom', message: `${key} is only for direction upload or both`, path: [key] });
    }
  });

type StreamParams = z.infer<typeof params>;

function planOf(p: StreamParams): StreamPlan {
  return { ...p, writeBytes: p.writeBytes ?? DEFAULT_WRITE_BYTES, writeIntervalMs: p.writeIntervalMs ?? DEFAULT_WRITE_INTERVAL_MS };
}

/**
 * What the plan can refuse: the key; and for an upload, a timeout that cannot hold the paced
 * writes and a stall after them, or writes so small and far apart that the reflector's acks (it
 * sends one only once the bytes received pay for it and for the final one: 2 × 15 bytes) would
 * come further apart than stallMs.
 */
function streamProblem(p: StreamPlan, planned: { timeoutMs: number; settings: { mediaKey?: Uint8Array | null } }): string | null {
  if (!planned.settings.mediaKey) return MEDIA_KEY_NEEDED;
  if (!uploads(p.direction)) return null;
  const sendingMs = (Math.ceil(p.bytes / p.writeBytes) - 1) * p.writeIntervalMs;
  if (planned.timeoutMs <= sendingMs + p.stallMs) {
    return `phaseTimeout ${planned.timeoutMs} ms cannot hold the upload's writes (${sendingMs} ms) and a stall after them (stallMs ${p.stallMs}): raise phaseTimeout or writeBytes, or lower bytes`;
  }
  const ackGapMs = Math.ceil((2 * ACK_RECORD_LENGTH) / p.writeBytes) * p.writeIntervalMs;
  if (ackGapMs >= p.stallMs) return `writes of ${p.writeBytes} B every ${p.writeIntervalMs} ms fund an ack only every ${ackGapMs} ms, not within stallMs ${p.stallMs}`;
  return null;
}

/**
 * `stream`: over the TCP or TLS connection the earlier phases opened to a callprobe reflector,
 * an authenticated stream test (src/protocol/reflector.ts): N bytes from the reflector
 * (`download`), N bytes to it with its acknowledgements of what arrived (`upload`), or both at
 * once. This is how the "freeze after 15-20 KB" technique shows (`stream_cutoff`, docs/architecture.md#failure-taxonomy):
 * the connection stays open, no RST, no FIN, and data simply stops, one way or both (the later
 * "l4-25" freeze counts packets both ways). At a freeze the evidence says, per direction, how
 * far data got in TCP payload bytes of the flow (what a censor's counter counts: under TLS the
 * TCP socket's bytes, not the decrypted ones) and when (ms from the phase start), as measured,
 * and what is inferred (segments from paced writes).
 *
 * Outcomes: every byte due arrived (and every upload byte was acknowledged): ok, with the
 * throughput; data came, then no progress one way for `stallMs`: `stream_cutoff`; nothing at all
 * within `stallMs`: `generic_timeout_error`; FIN before the end: `eof_error`; RST (also one the
 * system reports as an end of stream): `connection_reset`; the reflector's authenticated refusal
 * (N above its streamMaxBytes, or its streamsPerMinute used up): `proto_error` with `refusal` in
 * evidence; a reply that starts with neither the proof nor a refusal for this request, or records
 * and acks that are not the reflector's: `proto_mismatch` / `proto_malformed`.
 */
export const streamPhase: PhaseDefinition<typeof params, 'connection', StreamEvidence> = {
  name: 'stream',
  params,
  controlPhase: 'tcp',
  needs: 'connection',
  // The TCP cut-off per transport (tcp, tls) as the `shape` of the stream cut-off gauge.
  gauges: (r) =>
    r.transport ? [{ gauge: 'stream_cutoff_bytes', shape: r.transport, value: r.failure === 'stream_cutoff' ? (r.evidence.cutoffAtBytes ?? 0) : 0 }] : [],
  check: (p, planned) => websocketBefore('stream', planned) ?? streamProblem(planOf(p), planned),
  async run(ctx, { connection }) {
    const key = checkedSetting(ctx.settings.mediaKey, 'media.reflectorKey');
    const plan = planOf(ctx.params);
    const ev = ctx.evidence;
    Object.assign(ev, { direction: plan.direction, requestedBytes: plan.bytes, stallMs: plan.stallMs, proofVerified: false });
    const conversation = converse(ctx, connection);
    const now = () => ctx.trace.now();
    const flow = new FlowMeter(connection.tcp, now);
    const request = encodeStreamRequest(plan.bytes, key, { direction: plan.direction });
    conversation.send(encodeFrame(request.bytes));
    const io = { tcp: connection.tcp, encrypted: connection.transport === 'tls', now, signal: ctx.signal };
    try {
      await new StreamRun(plan, request, key, conversation, flow, io, ev).run();
    } finally {
      ev.tcp = flow.count();
    }
  },
};
