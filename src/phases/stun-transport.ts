/**
 * How a STUN or TURN client reaches its server, shared by the `stun` and `turn` phases (so
 * neither imports the other): UDP, as calls use it, or over the connection the `tcp`/`tls`
 * phases opened (RFC 8489 §6.2.2), with the RFC 8489 §6.2.1 retransmission timer over UDP:
 * initial RTO in ms, Rc requests in all, Rm RTOs of waiting after the last.
 */
import { z } from 'zod';
import { formatEndpoint } from '../net/address.js';
import { roundMs } from '../evidence.js';
import { RFC8489_RETRANSMISSION, StunClient, retransmissionSchedule, type Retransmission, type StunClientHandlers, type TransactionOutcome } from '../net/stun-client.js';
import type { Evidence } from '../result.js';
import { converse, openUdpFlow } from './kit.js';
import type { AddressesInput, ConnectionInput, PhaseContext, PhaseNeeds } from './types.js';

export const stunTransportParams = {
  transport: z.enum(['udp', 'tcp', 'tls']).default('udp'),
  rtoMs: z.number().int().min(10).max(10_000).default(RFC8489_RETRANSMISSION.rtoMs),
  rc: z.number().int().min(1).max(16).default(RFC8489_RETRANSMISSION.rc),
  rm: z.number().int().min(1).max(64).default(RFC8489_RETRANSMISSION.rm),
};

export type StunTransportNeeds = Extract<PhaseNeeds, 'addresses' | 'connection' | 'tls'>;

/** Over TCP the plan opens the connection first, over TLS the connection and the handshake. */
export function needsForTransport(p: { transport: 'udp' | 'tcp' | 'tls' }): StunTransportNeeds {
  return p.transport === 'tls' ? 'tls' : p.transport === 'tcp' ? 'connection' : 'addresses';
}

/**
 * A STUN client over the phase's own UDP flow to the target, or over the open connection; its
 * traffic counts into the phase's evidence.
 */
export async function openStunClient(
  ctx: PhaseContext<unknown, Evidence>,
  input: AddressesInput | ConnectionInput,
  signal: AbortSignal,
  handlers: StunClientHandlers = {},
): Promise<StunClient> {
  if (input.kind === 'addresses') {
    const channel = await openUdpFlow(ctx, input, { signal });
    return new StunClient({ kind: 'datagram', channel }, signal, handlers);
  }
  const { local } = input.connection;
  const conversation = converse(ctx, input.connection);
  ctx.evidence.localAddress = formatEndpoint(local.address, local.port);
  return new StunClient({ kind: 'stream', conversation }, signal, handlers);
}

/**
 * One STUN transaction with its evidence: each attempt's send time (from the phase start) and its time to the answer (an
 * answer to a retransmitted request cannot be told apart from one to an earlier copy, so every
 * attempt gets its own figure, and `rttMs` is the one of the last request sent before the answer),
 * the retransmission count, the stray answers, and the schedule's length.
 */
export async function transactWithEvidence(
  ctx: PhaseContext<unknown, Evidence>,
  client: StunClient,
  request: Uint8Array,
  transactionId: Uint8Array,
  retransmission: Retransmission,
): Promise<TransactionOutcome> {
  const attempts: Array<{ attempt: number; sentAtMs: number; rttMs?: number }> = [];
  // The client times its transaction from the first request; the evidence's offsets count from the
  // phase start, like every offset in a record. RTTs are taken on the client's own clock.
  const sinceFirst: number[] = [];
  ctx.evidence.scheduleMs = retransmissionSchedule(retransmission).timeoutAtMs;
  ctx.evidence.attempts = attempts;
  ctx.evidence.retransmissions = 0;
  ctx.evidence.stray = client.stray;
  const outcome = await client.transact(request, transactionId, {
    retransmission,
    onAttempt: (attempt, atMs) => {
      attempts.push({ attempt, sentAtMs: ctx.trace.now() });
      sinceFirst.push(atMs);
      ctx.evidence.retransmissions = attempt - 1;
    },
  });
  attempts.forEach((a, i) => (a.rttMs = roundMs(outcome.answeredAtMs - (sinceFirst[i] as number))));
  ctx.evidence.rttMs = attempts[attempts.length - 1]!.rttMs;
  return outcome;
}

/** Over UDP a silent server is declared only at the end of the schedule: the phase must outlast it. */
export function scheduleProblem(p: Retransmission & { transport: 'udp' | 'tcp' | 'tls' }, timeoutMs: number): string | null {
  const scheduleMs = retransmissionSchedule(p).timeoutAtMs;
  return p.transport === 'udp' && timeoutMs <= scheduleMs
    ? `phaseTimeout ${timeoutMs} ms must exceed the retransmission schedule (${scheduleMs} ms for rtoMs ${p.rtoMs}, rc ${p.rc}, rm ${p.rm})`
    : null;
}
