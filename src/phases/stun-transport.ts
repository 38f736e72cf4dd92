/**
 * How a STUN or TURN client reaches its server, shared by the `stun` and `turn` phases (so
 * neither imports the other): UDP, as calls use it, or over the connection the `tcp`/`tls`
 * phases opened (RFC 8489 §6.2.2), with the RFC 8489 §6.2.1 retransmission timer over UDP:
 * initial RTO in ms, Rc requests in all, Rm RTOs of waiting after the last.
 */
import { z } from 'zod';
import { formatEndpoint } from '../net/address.js';
import { RFC8489_RETRANSMISSION, StunClient, type StunClientHandlers } from '../net/stun-client.js';
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
