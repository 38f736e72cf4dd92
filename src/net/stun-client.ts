import { ProbeFailure } from '../failure.js';
import { parseMessage, type StunMessage } from '../protocol/stun.js';
import { decodeChannelData, streamFrameLength } from '../protocol/turn.js';
import type { Conversation } from './conversation.js';
import { hexPrefix, roundMs } from '../evidence.js';
import type { DatagramChannel } from './udp.js';

/**
 * STUN client transactions (RFC 8489 §6.2-6.3) over a connected UDP socket or over the byte stream
 * of an open TCP/TLS connection, shared by the `stun` and `turn` phases. One reader takes every
 * message from the server and routes it: a response to the transaction waiting for it, an
 * indication (TURN Data) or ChannelData to the phase's handlers, anything else to counters.
 *
 * Decisions, per the RFC:
 * - A response whose transaction id matches no outstanding transaction is discarded and the
 *   transaction keeps waiting (RFC 8489 §6.3: such a response is not ours). Only when the
 *   transaction then times out does the phase fail, with `proto_mismatch` rather than
 *   `generic_timeout_error`, because something did answer, just not to us (an injected or
 *   replayed answer is itself evidence).
 * - Over UDP a datagram that is neither STUN nor ChannelData is discarded likewise (counted;
 *   `proto_malformed` if nothing valid came before the timeout). Over a stream it is fatal at
 *   once: after a bad frame there is no way to find the next one.
 * - Retransmissions of the same request may bring duplicate responses: a response to a
 *   transaction already answered is ignored silently.
 */

/** RFC 8489 §6.2.1: the retransmission timer. */
export interface Retransmission {
  /** Initial RTO, ms (RFC 8489 §6.2.1: SHOULD be 500 ms or more on a fixed line; a parameter here). */
  rtoMs: number;
  /** Rc: requests sent in all (RFC default 7). */
  rc: number;
  /** Rm: the wait after the last request, in RTOs (RFC default 16). */
  rm: number;
}

/** RFC 8489 §6.2.1 defaults: requests at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; timeout at 39.5 s. */
export const RFC8489_RETRANSMISSION: Retransmission = { rtoMs: 500, rc: 7, rm: 16 };

/**
 * When each request is sent (ms after the first) and when the transaction times out. Over a
 * reliable transport only the first send happens and the timeout is the same total (RFC 8489
 * §6.2.2: Ti, 39.5 s by default, "which is the total UDP retransmission time").
 */
export function retransmissionSchedule(r: Retransmission): { sendAtMs: number[]; timeoutAtMs: number } {
  const sendAtMs = [0];
  let interval = r.rtoMs;
  for (let i = 1; i < r.rc; i++) {
    sendAtMs.push(sendAtMs[i - 1]! + interval);
    interval *= 2;
  }
  return { sendAtMs, timeoutAtMs: sendAtMs[sendAtMs.length - 1]! + r.rm * r.rtoMs };
}

export type StunTransport = { kind: 'datagram'; channel: DatagramChannel } | { kind: 'stream'; conversation: Conversation };

export interface TransactionOutcome {
  response: StunMessage;
  /** Requests sent (1 + retransmissions). */
  attempts: number;
  /** When each request went out, ms after the first. */
  sentAtMs: number[];
  /** When the answer came, ms after the first request. */
  answeredAtMs: number;
}

export interface TransactOptions {
  retransmission: Retransmission;
  /** Called as each request goes out (attempt counts from 1), so evidence grows as it happens. */
  onAttempt?: (attempt: number, atMs: number) => void;
  /**
   * Whether a response with our transaction id is acceptable; a rejected one is treated like a
   * mismatched one (RFC 8489 §9.2.5: a response whose MESSAGE-INTEGRITY fails is discarded).
   */
  accept?: (response: StunMessage) => boolean;
  /** Aborts this transaction only (default: the client's signal). */
  signal?: AbortSignal;
}

export interface StunClientHandlers {
  /** STUN indications from the server (TURN Data indications). */
  onIndication?: (message: StunMessage) => void;
  /** ChannelData from the server (TURN, RFC 8656 §12). */
  onChannelData?: (channel: number, data: Buffer) => void;
}

interface Pending {
  resolve: (m: StunMessage) => void;
  reject: (e: unknown) => void;
  accept: (m: StunMessage) => boolean;
}

/** Counters of what arrived that was not an answer to us (evidence for researchers). */
export interface StrayCounts {
  mismatchedAnswers: number;
  malformedAnswers: number;
  duplicateAnswers: number;
  /** Hex of the first mismatched answer's transaction id, or of the first malformed bytes. */
  firstStrayHex?: string;
}

export class StunClient {
  readonly stray: StrayCounts = { mismatchedAnswers: 0, malformedAnswers: 0, duplicateAnswers: 0 };
  private readonly pending = new Map<string, Pending>();
  private readonly answered = new Set<string>();
  private fatal: unknown = null;
  private closed = false;

  constructor(
    private readonly transport: StunTransport,
    private readonly signal: AbortSignal,
    private readonly handlers: StunClientHandlers = {},
  ) {
    void this.pump();
  }

  get streamed(): boolean {
    return this.transport.kind === 'stream';
  }

  /** Sends bytes that expect no answer (indications, ChannelData). */
  send(bytes: Uint8Array): void {
    if (this.transport.kind === 'datagram') this.transport.channel.send(bytes);
    else this.transport.conversation.send(bytes);
  }

  /**
   * One client transaction: sends `request` (retransmitted over UDP on the RFC schedule, once over
   * a stream) and resolves with the first acceptable response carrying `transactionId`.
   */
  transact(request: Uint8Array, transactionId: Uint8Array, opts: TransactOptions): Promise<TransactionOutcome> {
    const key = Buffer.from(transactionId).toString('hex');
    const { sendAtMs, timeoutAtMs } = retransmissionSchedule(opts.retransmission);
    const schedule = this.streamed ? [0] : sendAtMs;
    const before = { ...this.stray };
    const signal = opts.signal ?? this.signal;
    return new Promise<TransactionOutcome>((resolve, reject) => {
      if (this.fatal) return reject(this.fatal);
      let started = performance.now();
      const sent: number[] = [];
      // One timer at a time: the next retransmission, or after the last one the timeout.
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.pending.delete(key);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        done();
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.pending.set(key, {
        accept: opts.accept ?? (() => true),
        resolve: (response) => {
          done();
          this.answered.add(key);
          resolve({ response, attempts: sent.length, sentAtMs: sent, answeredAtMs: roundMs(performance.now() - started) });
        },
        reject: (err) => {
          done();
          reject(err);
        },
      });
      const fire = (): void => {
        const i = sent.length;
        if (i === 0) started = performance.now(); // times count from the first request on the wire
        const now = i === 0 ? 0 : roundMs(performance.now() - started);
        sent.push(now);
        opts.onAttempt?.(i + 1, now);
        this.send(request);
        const next = schedule[i + 1];
        // Rounded up: Node truncates fractional delays, which would send a retransmission early.
        const elapsed = performance.now() - started;
        timer =
          next !== undefined
            ? setTimeout(fire, Math.ceil(next - elapsed))
            : setTimeout(() => {
                done();
                reject(this.timeoutFailure(sent.length, timeoutAtMs, before));
              }, Math.ceil(timeoutAtMs - elapsed));
      };
      fire();
    });
  }

  /** Stops routing; the transport itself belongs to whoever opened it. */
  close(): void {
    this.closed = true;
    this.failAll(CLIENT_CLOSED);
  }

  private timeoutFailure(attempts: number, waitedMs: number, before: StrayCounts): ProbeFailure {
    const evidence = { requestsSent: attempts, retransmissions: attempts - 1, waitedMs };
    const mismatched = this.stray.mismatchedAnswers - before.mismatchedAnswers;
    const malformed = this.stray.malformedAnswers - before.malformedAnswers;
    if (mismatched > 0) {
      return new ProbeFailure('proto_mismatch', `${mismatched} STUN answer(s) came back, none for our transaction`, {
        ...evidence,
        mismatchedAnswers: mismatched,
      });
    }
    if (malformed > 0) {
      return new ProbeFailure('proto_malformed', `${malformed} datagram(s) came back that are not STUN`, { ...evidence, malformedAnswers: malformed });
    }
    const what = this.streamed ? 'a request' : `${attempts} request(s)`;
    return new ProbeFailure('generic_timeout_error', `no STUN answer to ${what} within ${waitedMs} ms`, evidence);
  }

  private failAll(err: unknown): void {
    this.fatal ??= err;
    for (const p of [...this.pending.values()]) p.reject(this.fatal);
  }

  private async pump(): Promise<void> {
    try {
      if (this.transport.kind === 'datagram') {
        for (;;) this.route(await this.transport.channel.receive());
      } else {
        let buf = Buffer.alloc(0);
        for (;;) {
          const frame = streamFrameLength(buf);
          if (frame && buf.length >= frame.length) {
            const bytes = buf.subarray(0, frame.length);
            buf = buf.subarray(frame.length);
            // Over a stream a frame that does not decode is fatal: the framing is lost.
            if (frame.kind === 'stun') this.routeMessage(parseMessage(bytes));
            else {
              const cd = decodeChannelData(bytes, { stream: true });
              this.handlers.onChannelData?.(cd.channel, cd.data);
            }
          } else {
            buf = Buffer.concat([buf, await this.transport.conversation.receive()]);
          }
        }
      }
    } catch (err) {
      if (!this.closed) this.failAll(err);
    }
  }

  private route(datagram: Buffer): void {
    const first = datagram[0] ?? 0xff;
    try {
      // RFC 7983 §7 (RFC 9443): first byte 0-3 STUN, 64-79 ChannelData.
      if (first <= 3) this.routeMessage(parseMessage(datagram));
      else if (first >= 0x40 && first <= 0x4f) {
        const cd = decodeChannelData(datagram);
        this.handlers.onChannelData?.(cd.channel, cd.data);
      } else throw new ProbeFailure('proto_malformed', 'neither STUN nor ChannelData');
    } catch (err) {
      if (!(err instanceof ProbeFailure) || err.code !== 'proto_malformed') throw err;
      this.stray.malformedAnswers++;
      this.stray.firstStrayHex ??= hexPrefix(datagram);
    }
  }

  private routeMessage(message: StunMessage): void {
    if (message.class === 'indication') {
      this.handlers.onIndication?.(message);
      return;
    }
    if (message.class === 'request') return; // a server does not ask us anything here
    const key = message.transactionId.toString('hex');
    const waiting = this.pending.get(key);
    if (waiting && waiting.accept(message)) return waiting.resolve(message);
    if (!waiting && this.answered.has(key)) {
      this.stray.duplicateAnswers++;
      return;
    }
    this.stray.mismatchedAnswers++;
    this.stray.firstStrayHex ??= key;
  }
}

/** Shared: closing is routine, and an Error per close (with its stack) shows in profiles. */
const CLIENT_CLOSED = new ProbeFailure('interrupted', 'STUN client closed');
