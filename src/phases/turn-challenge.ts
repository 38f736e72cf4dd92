import { z } from 'zod';
import { ProbeFailure } from '../failure.js';
import { ATTR, TRANSPORT_UDP, getErrorCode, getRealm, getSoftware, lifetime, requestedTransport } from '../protocol/stun-attributes.js';
import { buildMessage, findAttribute, newTransactionId, verifyFingerprint, type StunMessage } from '../protocol/stun.js';
import { METHOD } from '../protocol/turn.js';
import { needsForTransport, openStunClient, scheduleProblem, stunTransportParams, transactWithEvidence, type StunTransportNeeds } from './stun-transport.js';
import type { PhaseContext, PhaseDefinition } from './types.js';

const params = z
  .object({
    ...stunTransportParams,
    /** Why this target is probed, copied into the evidence (e.g. where the address was seen). */
    note: z.string().min(1).max(300).optional(),
  })
  .strict();

const MAX_TEXT = 128;

/**
 * `turn-challenge`: the reply oracle of a TURN server we hold no credentials for, such as the
 * call servers a Telegram call is given (`phoneConnectionWebrtc` with per-call credentials). An
 * Allocate without credentials must be answered with a 401 carrying REALM and NONCE (RFC 8489
 * §9.2.4: "the server MUST generate an error response with an error code of 401 ... This response
 * MUST include a REALM value. The response MUST include a NONCE"; RFC 8656 §7.2), so that answer,
 * on our transaction id, proves a TURN server answered on this path: `ok`. Nothing more is sent
 * (no credentials exist). The request is the 28 bytes a Telegram client sends first (an Allocate
 * with REQUESTED-TRANSPORT UDP only, no FINGERPRINT), so a classifier sees what it sees in a call.
 *
 * Over UDP the RFC 8489 §6.2.1 retransmission schedule applies, as in `stun`; silence is
 * `generic_timeout_error` with every attempt and the flow's ledger in evidence (what censors did
 * to these servers in 2025-2026: "9 out, 0 in"). Silence is ambiguous here (a server could ignore
 * strangers), so the known-responsive rule decides whether it counts as `blocked`.
 *
 * Outcomes: the 401 with REALM and NONCE: ok (realm, SOFTWARE, the nonce's length in evidence);
 * a 401 without them: `proto_malformed`; another error response: `proto_error` with its code; a
 * success (a server that allocates for anyone): ok, `allocatedWithoutCredentials`, and the
 * allocation released at once (Refresh with LIFETIME 0).
 */
export const turnChallengePhase: PhaseDefinition<typeof params, StunTransportNeeds> = {
  name: 'turn-challenge',
  params,
  controlPhase: 'stun',
  path: 'calls',
  silenceAmbiguous: () => true,
  ownAddresses: ['localAddress'],
  needs: 'addresses',
  needsFor: needsForTransport,
  check: (p, { timeoutMs }) => scheduleProblem(p, timeoutMs),
  async run(ctx, input) {
    if (ctx.params.note) ctx.evidence.note = ctx.params.note;
    const client = await openStunClient(ctx, input, ctx.signal);
    try {
      const transactionId = newTransactionId();
      const request = buildMessage({ method: METHOD.ALLOCATE, class: 'request', transactionId, attributes: [requestedTransport(TRANSPORT_UDP)] });
      ctx.evidence.requestBytes = request.length;
      const { response } = await transactWithEvidence(ctx, client, request, transactionId, ctx.params);
      describeAnswer(ctx, response);
      if (response.class === 'success') {
        // An open relay allocated for us: give it back, unauthenticated as it was taken.
        ctx.evidence.allocatedWithoutCredentials = true;
        const refresh = newTransactionId();
        await client
          .transact(buildMessage({ method: METHOD.REFRESH, class: 'request', transactionId: refresh, attributes: [lifetime(0)] }), refresh, { retransmission: ctx.params })
          .then(
            () => (ctx.evidence.released = true),
            () => (ctx.evidence.released = false),
          );
      }
    } finally {
      client.close();
    }
  },
};

function describeAnswer(ctx: PhaseContext<unknown>, response: StunMessage): void {
  const e = ctx.evidence;
  e.software = getSoftware(response)?.replace(/\0+$/, '').slice(0, MAX_TEXT) ?? null;
  e.fingerprint = findAttribute(response, ATTR.FINGERPRINT) ? verifyFingerprint(response) : null;
  if (response.class !== 'error') return;
  const error = getErrorCode(response);
  e.errorCode = error?.code ?? null;
  e.errorReason = error ? error.reason.slice(0, MAX_TEXT) : null;
  if (error?.code !== 401) {
    throw new ProbeFailure('proto_error', `Allocate answered with ${error ? `${error.code} ${e.errorReason}` : 'an error without ERROR-CODE'}, not the 401 challenge`);
  }
  const realm = getRealm(response);
  const nonce = findAttribute(response, ATTR.NONCE);
  e.realm = realm?.slice(0, MAX_TEXT) ?? null;
  e.nonceBytes = nonce?.value.length ?? null;
  if (realm === undefined || !nonce) throw new ProbeFailure('proto_malformed', '401 without REALM and NONCE: not the challenge RFC 8489 §9.2.4 requires');
}
