import { z } from 'zod';
import { roundMs } from '../evidence.js';
import { ProbeFailure } from '../failure.js';
import { abortable } from '../net/abort.js';
import { formatEndpoint } from '../net/address.js';
import { decodeReflectorReply, encodeReflectorHello, type ReflectorHello, type ReflectorReply } from '../protocol/tg-reflector.js';
import { openUdpFlow } from './kit.js';
import type { PhaseDefinition } from './types.js';

const params = z
  .object({
    /** Whose hello to send: tgcalls (today's apps: 12 tag bytes, a local tag, query id 123) or libtgvoip (older ones). */
    style: z.enum(['tgcalls', 'libtgvoip']).default('tgcalls'),
    /** A 16-byte peer tag as 32 hex digits (a lab reflector told of it); default a fresh random one, which no reflector was told of. */
    peerTag: z
      .string()
      .regex(/^[0-9a-fA-F]{32}$/, 'must be a 16-byte peer tag as 32 hex digits')
      .optional(),
    /** Hellos sent in all: libtgvoip judges UDP after its 4th and again after its 10th ping. */
    hellos: z.number().int().min(1).max(60).default(10),
    /** Between hellos: both clients resend every 500 ms. */
    intervalMs: z.number().int().min(100).max(5000).default(500),
    /** After the last hello, how long an answer may still take: libtgvoip evaluates 1 s after its 10th ping. */
    waitMs: z.number().int().min(100).max(10_000).default(1000),
    note: z.string().min(1).max(300).optional(),
  })
  .strict();

type Params = z.infer<typeof params>;

function scheduleMs(p: Pick<Params, 'hellos' | 'intervalMs' | 'waitMs'>): number {
  return (p.hellos - 1) * p.intervalMs + p.waitMs;
}

/**
 * `tg-reflector`: does a Telegram call reflector (UDP 596-599) answer from here? It sends the
 * reflector hello a Telegram client sends (src/protocol/tg-reflector.ts: tgcalls or libtgvoip
 * style) every `intervalMs`, `hellos` times, and waits `waitMs` after the last, as libtgvoip does
 * before it gives up on UDP and falls back to TCP relays (VoIPController::EvaluateUdpPingResults).
 *
 * A special packet echoing our tag is the reflector's answer: `ok`, with the answer's kind and,
 * for a self-info, the reflector's clock (and its skew from ours), whether it echoed our query id,
 * and the address it saw us at (our own public address: the records' privacy rule applies).
 * Nothing but our tag back is stray (counted): `proto_mismatch` at the end if nothing else came.
 * Silence is `generic_timeout_error` with the hellos sent and the flow's ledger (what the 2025-2026
 * captures showed: "90 out, 0 in"). Whether a reflector answers a tag it never issued is not
 * published, so silence is ambiguous and the known-responsive rule decides about `blocked`.
 */
export const tgReflectorPhase: PhaseDefinition<typeof params, 'addresses'> = {
  name: 'tg-reflector',
  params,
  controlPhase: 'stun',
  path: 'calls',
  silenceAmbiguous: () => true,
  // `seenAs` is where the reflector saw us: our public address.
  ownAddresses: ['localAddress', 'seenAs'],
  needs: 'addresses',
  check: (p, { timeoutMs }) =>
    timeoutMs <= scheduleMs(p) ? `phaseTimeout ${timeoutMs} ms must exceed the hellos' schedule (${scheduleMs(p)} ms for ${p.hellos} hellos every ${p.intervalMs} ms and ${p.waitMs} ms of waiting)` : null,
  async run(ctx, input) {
    const p = ctx.params;
    const ev = ctx.evidence;
    if (p.note) ev.note = p.note;
    const channel = await openUdpFlow(ctx, input);
    const hello = encodeReflectorHello({ style: p.style, ...(p.peerTag ? { peerTag: Buffer.from(p.peerTag, 'hex') } : {}) });
    Object.assign(ev, { style: p.style, tagHex: hello.tag.toString('hex'), hellosSent: 0, strayAnswers: 0 });
    const sentAt: number[] = [];
    const answer = await abortable<{ reply: ReflectorReply; atMs: number }>(ctx.signal, (resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const send = (): void => {
        if (!channel.send(hello.bytes)) return;
        sentAt.push(ctx.trace.now());
        ev.hellosSent = sentAt.length;
        timer = sentAt.length < p.hellos ? setTimeout(send, p.intervalMs) : setTimeout(silent, p.waitMs);
      };
      const silent = (): void => {
        const stray = ev.strayAnswers as number;
        reject(
          stray > 0
            ? new ProbeFailure('proto_mismatch', `${stray} datagram(s) came back, none an answer to our hello`)
            : new ProbeFailure('generic_timeout_error', `no answer to ${sentAt.length} hellos within ${scheduleMs(p)} ms`, { waitedMs: scheduleMs(p) }),
        );
      };
      void read(channel, hello, ev, resolve, reject, () => ctx.trace.now());
      send();
      return () => clearTimeout(timer);
    });
    describe(ev, answer.reply, answer.atMs, sentAt);
  },
};

/** Reads datagrams until one is the reflector's answer to us; a malformed one ends the phase, others are stray. */
async function read(
  channel: Awaited<ReturnType<typeof openUdpFlow>>,
  hello: ReflectorHello,
  ev: Record<string, unknown>,
  resolve: (a: { reply: ReflectorReply; atMs: number }) => void,
  reject: (err: unknown) => void,
  now: () => number,
): Promise<void> {
  for (;;) {
    let datagram: Buffer;
    try {
      datagram = await channel.receive();
    } catch (err) {
      return reject(err);
    }
    try {
      return resolve({ reply: decodeReflectorReply(datagram, hello), atMs: now() });
    } catch (err) {
      if (err instanceof ProbeFailure && err.code === 'proto_mismatch') {
        ev.strayAnswers = (ev.strayAnswers as number) + 1;
        ev.firstStrayHex ??= datagram.subarray(0, 32).toString('hex');
        continue;
      }
      return reject(err);
    }
  }
}

function describe(ev: Record<string, unknown>, reply: ReflectorReply, atMs: number, sentAt: readonly number[]): void {
  ev.reply = reply.kind;
  ev.answeredAfterHellos = sentAt.length;
  // As for STUN: an answer to a repeated hello cannot be told from one to an earlier copy.
  ev.rttMs = roundMs(atMs - sentAt[sentAt.length - 1]!);
  if (reply.kind === 'self-info') {
    ev.reflectorDate = reply.date;
    ev.clockSkewS = Math.round(reply.date - Date.now() / 1000);
    ev.queryIdEchoed = reply.queryIdEchoed;
    ev.seenAs = formatEndpoint(reply.address, reply.port);
  } else if (reply.kind === 'special') {
    ev.tlid = reply.tlid.toString(16).padStart(8, '0');
  } else {
    ev.replyLength = reply.length;
  }
}
