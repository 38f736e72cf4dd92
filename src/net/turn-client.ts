import { ProbeFailure } from '../failure.js';
import {
  ATTR,
  PASSWORD_ALGORITHM,
  getErrorCode,
  getPasswordAlgorithms,
  getRealm,
  nonce as nonceAttr,
  passwordAlgorithm,
  passwordAlgorithms,
  realm as realmAttr,
  username as usernameAttr,
  type PasswordAlgorithm,
} from '../protocol/stun-attributes.js';
import { buildMessage, findAttribute, newTransactionId, verifyIntegrity, type StunAttribute, type StunMessage } from '../protocol/stun.js';
import { longTermKey, methodName, saslprep, turnErrorFailure, METHOD } from '../protocol/turn.js';
import type { TurnCredential } from '../types.js';
import type { Retransmission, StunClient } from './stun-client.js';

/** RFC 8489 §9.2.5: a 438 means "take the new NONCE and try again"; a server that keeps saying it is broken. */
const MAX_STALE_NONCE_RETRIES = 2;
const MAX_TEXT = 128;

/**
 * TURN requests with the long-term credential mechanism (RFC 8489 §9.2, RFC 8656 §7): the first
 * Allocate goes without credentials and gets the 401 challenge with REALM and NONCE; every later
 * request carries USERNAME, REALM, NONCE and MESSAGE-INTEGRITY under the key MD5(user:realm:pass)
 * (or SHA-256 when the server offers PASSWORD-ALGORITHMS, RFC 8489 §9.2.4), and a 438 Stale
 * Nonce is answered by retrying with the new NONCE. Responses with MESSAGE-INTEGRITY that does
 * not verify are discarded (RFC 8489 §9.2.5), so a forged success cannot end a transaction.
 */
export class TurnClient {
  /** Requests sent in all, retransmissions included. */
  requests = 0;
  staleNonceRetries = 0;
  realm: string | null = null;
  /** The algorithm the key was derived with, once challenged. */
  algorithm: 'MD5' | 'SHA-256' | null = null;
  private auth: { realm: Buffer; nonce: Buffer; key: Buffer; algorithms: PasswordAlgorithm[] | null; chosen: number } | null = null;

  constructor(
    private readonly client: StunClient,
    private readonly retransmission: Retransmission,
    private readonly credential: TurnCredential,
  ) {}

  /**
   * The unauthenticated first Allocate (RFC 8656 §7.1): resolves with a success response when the
   * server needs no credentials, and otherwise reads the 401's REALM and NONCE for what follows.
   */
  async challenge(attributes: readonly StunAttribute[], signal: AbortSignal): Promise<StunMessage | null> {
    const response = await this.send(METHOD.ALLOCATE, attributes, false, signal);
    if (response.class === 'success') return response;
    const error = getErrorCode(response);
    if (error?.code !== 401) throw turnFailure(response, METHOD.ALLOCATE, false);
    this.learn(response);
    return null;
  }

  /** An authenticated request; 438 Stale Nonce is retried with the new nonce. Error responses throw. */
  async request(method: number, attributes: readonly StunAttribute[], signal: AbortSignal): Promise<StunMessage> {
    for (let stale = 0; ; stale++) {
      const response = await this.send(method, attributes, this.auth !== null, signal);
      if (response.class === 'success') return response;
      if (getErrorCode(response)?.code === 438 && stale < MAX_STALE_NONCE_RETRIES && this.auth) {
        this.staleNonceRetries++;
        this.learn(response);
        continue;
      }
      throw turnFailure(response, method, this.auth !== null);
    }
  }

  private async send(method: number, attributes: readonly StunAttribute[], authenticate: boolean, signal: AbortSignal): Promise<StunMessage> {
    const transactionId = newTransactionId();
    const auth = authenticate ? this.auth : null;
    const extra: StunAttribute[] = auth
      ? [
          usernameAttr(this.credential.username),
          realmAttr(auth.realm),
          nonceAttr(auth.nonce),
          ...(auth.algorithms ? [passwordAlgorithms(auth.algorithms), passwordAlgorithm(auth.chosen)] : []),
        ]
      : [];
    const bytes = buildMessage({
      method,
      class: 'request',
      transactionId,
      attributes: [...attributes, ...extra],
      ...(auth ? { integrity: auth.key } : {}),
      fingerprint: true,
    });
    const outcome = await this.client.transact(bytes, transactionId, {
      retransmission: this.retransmission,
      signal,
      onAttempt: () => {
        this.requests++;
      },
      // RFC 8489 §9.2.5: once authenticated, a response must carry a valid MESSAGE-INTEGRITY; only
      // the 401/438 challenges that restart authentication may come without it.
      accept: (r) => {
        if (!auth) return true;
        if (findAttribute(r, ATTR.MESSAGE_INTEGRITY)) return verifyIntegrity(r, auth.key);
        const code = r.class === 'error' ? getErrorCode(r)?.code : undefined;
        return code === 401 || code === 438;
      },
    });
    return outcome.response;
  }

  /** Takes REALM and NONCE (and PASSWORD-ALGORITHMS) from a 401 or 438 and derives the key. */
  private learn(response: StunMessage): void {
    // Echoed as the bytes received, never re-encoded: a NONCE need not be valid text.
    const realm = findAttribute(response, ATTR.REALM)?.value;
    const nonce = findAttribute(response, ATTR.NONCE)?.value;
    if (!realm || !nonce) {
      const error = getErrorCode(response);
      throw new ProbeFailure('proto_error', `${error?.code ?? '?'} challenge without REALM and NONCE (RFC 8489 §9.2.4)`, {
        errorCode: error?.code ?? null,
        errorMethod: 'Allocate',
      });
    }
    const offered = getPasswordAlgorithms(response) ?? null;
    // RFC 8489 §9.2.4: use the first algorithm in the server's list that we support.
    const chosen = offered?.find((a) => a.algorithm === PASSWORD_ALGORITHM.MD5 || a.algorithm === PASSWORD_ALGORITHM.SHA256)?.algorithm;
    if (offered && chosen === undefined) {
      throw new ProbeFailure('proto_error', 'the server offers no password algorithm we support (RFC 8489 §18.5)', {
        offeredAlgorithms: offered.map((a) => a.algorithm),
      });
    }
    const algorithm = chosen ?? PASSWORD_ALGORITHM.MD5;
    this.realm = getRealm(response)?.slice(0, MAX_TEXT) ?? null;
    this.algorithm = algorithm === PASSWORD_ALGORITHM.SHA256 ? 'SHA-256' : 'MD5';
    this.auth = {
      realm: Buffer.from(realm),
      nonce: Buffer.from(nonce),
      key: longTermKey(this.credential.username, realm, saslprep(this.credential.password), algorithm),
      algorithms: offered,
      chosen: algorithm,
    };
  }
}

/** The taxonomy code for a TURN error response, with the code, reason and method in evidence. */
export function turnFailure(response: StunMessage, method: number, afterAuthentication: boolean): ProbeFailure {
  const error = getErrorCode(response);
  const code = error ? turnErrorFailure(error.code, afterAuthentication) : 'proto_error';
  return new ProbeFailure(code, `${methodName(method)} error response ${error ? `${error.code} ${error.reason.slice(0, MAX_TEXT)}` : 'without ERROR-CODE'}`, {
    errorCode: error?.code ?? null,
    errorReason: error ? error.reason.slice(0, MAX_TEXT) : null,
    errorMethod: methodName(method),
  });
}
