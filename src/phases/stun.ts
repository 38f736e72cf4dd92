import { z } from 'zod';
import { ProbeFailure } from '../failure.js';
import { formatEndpoint } from '../net/address.js';
import { ATTR, attributeName, getErrorCode, getOtherAddress, getReflexiveAddress, getResponseOrigin, getSoftware } from '../protocol/stun-attributes.js';
import {
  METHOD_BINDING,
  buildMessage,
  findAttribute,
  newTransactionId,
  unknownComprehensionRequired,
  verifyFingerprint,
  type StunMessage,
} from '../protocol/stun.js';
import { needsForTransport, openStunClient, scheduleProblem, stunTransportParams, transactWithEvidence, type StunTransportNeeds } from './stun-transport.js';
import type { PhaseContext, PhaseDefinition } from './types.js';

const params = z
  .object({
    ...stunTransportParams,
    /** Send the RFC 3489 form (128-bit transaction id, no magic cookie), for classic servers. */
    classic: z.boolean().default(false),
    /** Append FINGERPRINT (RFC 8489 §14.7). Off by default: a bare 20-byte request is what ICE agents send to STUN servers. */
    fingerprint: z.boolean().default(false),
    /**
     * Why this target is probed, copied into the evidence so nobody reads more into the result
     * than was measured: `relay-reachability` means a call relay's address answered (or not) a
     * plain Binding request, which needs no account; it does not prove a call would work.
     */
    purpose: z.enum(['stun-server', 'relay-reachability']).default('stun-server'),
    note: z.string().min(1).max(300).optional(),
  })
  .strict();

type StunParams = z.infer<typeof params>;

/** Attributes a Binding response may carry that we understand (RFC 8489 §7.3.3: others in 0x0000-0x7FFF fail the transaction). */
const KNOWN_ATTRIBUTES: ReadonlySet<number> = new Set(Object.values(ATTR));
const MAX_TEXT = 128;

/**
 * `stun`: one Binding transaction (RFC 8489 §3, §6) to the target. Over UDP it follows the RFC's
 * retransmission schedule (requests at 0, RTO, 3 RTO, 7 RTO... Rc in all, then Rm x RTO of
 * waiting): with the defaults (500 ms, 7, 16) a silent server takes 39.5 s to declare, so the
 * catalogue's phaseTimeout must exceed rtoMs x (2^(rc-1) - 1 + rm); evidence `scheduleMs` says it.
 * Over TCP/TLS the request goes once over the open connection, framed by the STUN length.
 *
 * Evidence: each attempt's send time and its time to the answer (an answer to a retransmitted
 * request cannot be told apart from one to an earlier copy, so every attempt gets its own figure
 * and `rttMs` is the one from the last request sent before the answer), the mapped address and
 * whether it equals our local address (false: behind NAT), the server's SOFTWARE, whether the
 * answer was a classic RFC 3489 one (MAPPED-ADDRESS without XOR-MAPPED-ADDRESS), and counts of
 * stray answers (see net/stun-client.ts for why a wrong transaction id is waited past).
 */
export const stunPhase: PhaseDefinition<typeof params, StunTransportNeeds> = {
  name: 'stun',
  params,
  controlPhase: 'stun',
  path: 'calls',
  silenceAmbiguous: (p) => p.purpose === 'relay-reachability',
  needs: 'addresses',
  // The UDP flow's or the connection's local address (kit.ts, stun-transport.ts) and what the server saw.
  ownAddresses: ['localAddress', 'mappedAddress'],
  needsFor: needsForTransport,
  check: (p, { timeoutMs }) => scheduleProblem(p, timeoutMs),
  async run(ctx, input) {
    const p = ctx.params;
    ctx.evidence.purpose = p.purpose;
    if (p.note) ctx.evidence.note = p.note;
    const client = await openStunClient(ctx, input, ctx.signal);
    try {
      const transactionId = newTransactionId(p.classic);
      const request = buildMessage({ method: METHOD_BINDING, class: 'request', transactionId, fingerprint: p.fingerprint && !p.classic });
      const outcome = await transactWithEvidence(ctx, client, request, transactionId, p);
      describeAnswer(ctx, outcome.response);
    } finally {
      client.close();
    }
  },
};

function describeAnswer(ctx: PhaseContext<StunParams>, response: StunMessage): void {
  ctx.evidence.magicCookie = response.magicCookie;
  ctx.evidence.responseAttributes = response.attributes.slice(0, 16).map((a) => attributeName(a.type));
  const software = getSoftware(response);
  // A classic (RFC 3489) answer counts the NUL padding in SOFTWARE's length (coturn does): not text.
  ctx.evidence.software = software === undefined ? null : software.replace(/\0+$/, '').slice(0, MAX_TEXT);
  if (findAttribute(response, ATTR.FINGERPRINT) && !verifyFingerprint(response)) {
    throw new ProbeFailure('proto_malformed', 'Binding response FINGERPRINT does not match its bytes (RFC 8489 §14.7)');
  }
  if (response.class === 'error') {
    const error = getErrorCode(response);
    ctx.evidence.errorCode = error?.code ?? null;
    ctx.evidence.errorReason = error ? error.reason.slice(0, MAX_TEXT) : null;
    throw new ProbeFailure('proto_error', `Binding error response ${error ? `${error.code} ${error.reason.slice(0, MAX_TEXT)}` : 'without ERROR-CODE'}`);
  }
  const unknown = unknownComprehensionRequired(response, KNOWN_ATTRIBUTES);
  if (unknown.length > 0) {
    ctx.evidence.unknownAttributes = unknown.slice(0, 16).map(attributeName);
    throw new ProbeFailure('proto_malformed', `Binding response has unknown comprehension-required attributes (RFC 8489 §7.3.3)`);
  }
  const mapped = getReflexiveAddress(response);
  if (!mapped) throw new ProbeFailure('proto_malformed', 'Binding success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS');
  ctx.evidence.mappedAddress = formatEndpoint(mapped.address, mapped.port);
  ctx.evidence.mappedAttribute = mapped.attribute;
  // An RFC 3489 server answers with MAPPED-ADDRESS only (RFC 8489 §14.1 keeps it for them).
  ctx.evidence.classicAnswer = mapped.attribute === 'MAPPED-ADDRESS';
  ctx.evidence.mappedEqualsLocal = ctx.evidence.localAddress === ctx.evidence.mappedAddress;
  ctx.evidence.behindNat = !ctx.evidence.mappedEqualsLocal;
  const origin = getResponseOrigin(response);
  const other = getOtherAddress(response);
  if (origin) ctx.evidence.responseOrigin = formatEndpoint(origin.address, origin.port);
  if (other) ctx.evidence.otherAddress = formatEndpoint(other.address, other.port);
}
