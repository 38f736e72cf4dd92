/**
 * The failure taxonomy (docs/architecture.md#failure-taxonomy) and the one mapping from Node/system errors to it.
 *
 * Codes are stable forever: dashboards, alert rules and papers depend on them. Where OONI Probe
 * has a failure string for the same observation we use the same string (ooni/probe-cli
 * internal/netxlite/errno.go and classify.go), so both datasets can be put side by side.
 */

export const FAILURE_CODES = [
  // DNS (OONI)
  'dns_nxdomain_error',
  'dns_no_answer',
  'dns_servfail_error',
  'dns_refused_error',
  'dns_bogon_error',
  // DNS (callprobe)
  'dns_mismatch',
  // transport (OONI)
  'generic_timeout_error',
  'connection_refused',
  'connection_reset',
  'eof_error',
  'host_unreachable',
  'network_unreachable',
  // TLS (OONI)
  'ssl_invalid_hostname',
  'ssl_unknown_authority',
  'ssl_invalid_certificate',
  'ssl_failed_handshake',
  // protocol (callprobe)
  'ws_bad_status',
  'proto_malformed',
  'proto_mismatch',
  'proto_error',
  'cert_chain_invalid',
  'turn_unauthorized',
  'turn_forbidden',
  'turn_quota',
  'turn_insufficient_capacity',
  'relay_timeout',
  // media (callprobe)
  'stream_cutoff',
  'media_no_packets',
  'media_degraded',
  'media_throttled',
  // callprobe itself
  'policy_denied',
  'interrupted',
  'internal_error',
  'unknown_failure',
] as const;

export type FailureCode = (typeof FAILURE_CODES)[number];

/**
 * An error that already knows its failure code. Phases and protocol codecs throw it for what
 * they observe themselves (a malformed answer, a wrong nonce, a policy denial); `classify`
 * passes it through untouched. `evidence` is merged into the phase's evidence.
 */
export class ProbeFailure extends Error {
  readonly code: FailureCode;
  readonly evidence: Record<string, unknown>;
  /** The operation that failed, when a socket helper classified a system error (OONI's failed_operation). */
  readonly operation: Operation | undefined;
  constructor(code: FailureCode, message: string, evidence: Record<string, unknown> = {}, options?: { cause?: unknown; operation?: Operation }) {
    super(message, options);
    this.name = 'ProbeFailure';
    this.code = code;
    this.evidence = evidence;
    this.operation = options?.operation;
  }
}

/**
 * What a socket was doing when it failed, as OONI's netxlite names its operations: the
 * classifier is chosen by it, so a TLS handshake's peculiarities never colour a plain read.
 */
export type Operation = 'dns' | 'connect' | 'tls' | 'read' | 'write';

/** Node/libuv/c-ares error codes, as `err.code`, to taxonomy codes. */
const SYSTEM_CODES: Readonly<Record<string, FailureCode>> = {
  ECONNREFUSED: 'connection_refused',
  ECONNRESET: 'connection_reset',
  EPIPE: 'connection_reset',
  ECONNABORTED: 'connection_reset',
  ETIMEDOUT: 'generic_timeout_error',
  ESOCKETTIMEDOUT: 'generic_timeout_error',
  EHOSTUNREACH: 'host_unreachable',
  EHOSTDOWN: 'host_unreachable',
  ENETUNREACH: 'network_unreachable',
  ENETDOWN: 'network_unreachable',
  EADDRNOTAVAIL: 'network_unreachable',
  // c-ares (node:dns) codes
  ENOTFOUND: 'dns_nxdomain_error',
  ENODATA: 'dns_no_answer',
  ESERVFAIL: 'dns_servfail_error',
  EREFUSED: 'dns_refused_error',
  ETIMEOUT: 'generic_timeout_error',
  // TLS certificate checks (OpenSSL verify codes as Node reports them)
  ERR_TLS_CERT_ALTNAME_INVALID: 'ssl_invalid_hostname',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'ssl_unknown_authority',
  UNABLE_TO_GET_ISSUER_CERT: 'ssl_unknown_authority',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'ssl_unknown_authority',
  SELF_SIGNED_CERT_IN_CHAIN: 'ssl_unknown_authority',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'ssl_unknown_authority',
  CERT_UNTRUSTED: 'ssl_unknown_authority',
  CERT_HAS_EXPIRED: 'ssl_invalid_certificate',
  CERT_NOT_YET_VALID: 'ssl_invalid_certificate',
  CERT_REVOKED: 'ssl_invalid_certificate',
  CERT_SIGNATURE_FAILURE: 'ssl_invalid_certificate',
  CERT_REJECTED: 'ssl_invalid_certificate',
  INVALID_CA: 'ssl_invalid_certificate',
  INVALID_PURPOSE: 'ssl_invalid_certificate',
  ERR_SSL_WRONG_VERSION_NUMBER: 'ssl_failed_handshake',
  ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE: 'ssl_failed_handshake',
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: 'ssl_failed_handshake',
  ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR: 'ssl_failed_handshake',
  ERR_SSL_TLSV1_UNRECOGNIZED_NAME: 'ssl_failed_handshake',
  ERR_SSL_NO_PROTOCOLS_AVAILABLE: 'ssl_failed_handshake',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'ssl_failed_handshake',
  ERR_SSL_PACKET_LENGTH_TOO_LONG: 'ssl_failed_handshake',
};

export interface Classified {
  code: FailureCode;
  /** The raw error, for researchers: `err.code` when there is one, else the message. */
  error: string;
  evidence: Record<string, unknown>;
}

/**
 * The one place that maps an error to a failure code, by the operation that failed (OONI's
 * netxlite classify.go picks its classifier the same way). Anything unmapped is
 * `unknown_failure` with the raw text kept, so nothing is silently lost (each one seen is a
 * mapping to add).
 */
export function classify(err: unknown, operation?: Operation): Classified {
  if (err instanceof ProbeFailure) {
    // A system error a socket helper wrapped keeps its raw code (ECONNRESET) as the error text.
    const raw = err.operation && typeof err.evidence.error === 'string' ? err.evidence.error : err.message;
    return { code: err.code, error: raw, evidence: err.evidence };
  }
  if (isAbort(err)) {
    return { code: 'interrupted', error: 'aborted', evidence: {} };
  }
  const e = err as { code?: unknown; message?: unknown; syscall?: unknown } | null | undefined;
  const sysCode = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (operation === 'tls') {
    const tls = classifyTlsHandshake(sysCode, message, e?.syscall);
    if (tls) return { ...tls, evidence: {} };
  }
  if (sysCode !== undefined) {
    const mapped = SYSTEM_CODES[sysCode];
    if (mapped) return { code: mapped, error: sysCode, evidence: {} };
    if (isPeerFrameCode(sysCode)) return { code: 'proto_malformed', error: sysCode, evidence: {} };
    if (sysCode.startsWith('ERR_SSL_') || sysCode.startsWith('ERR_TLS_')) {
      return { code: 'ssl_failed_handshake', error: sysCode, evidence: {} };
    }
    return { code: 'unknown_failure', error: `${sysCode}: ${message}`, evidence: {} };
  }
  return { code: 'unknown_failure', error: message, evidence: {} };
}

/** What only a TLS handshake reports this way; null to fall through to the generic table. */
function classifyTlsHandshake(sysCode: string | undefined, message: string, syscall: unknown): Omit<Classified, 'evidence'> | null {
  // Node reports a FIN during a TLS handshake as ECONNRESET with this text and no syscall: it is an
  // orderly close, which the taxonomy keeps apart from an RST ("read ECONNRESET", syscall "read").
  if (sysCode === 'ECONNRESET' && syscall === undefined && /disconnected before secure TLS/i.test(message)) {
    return { code: 'eof_error', error: 'EOF during TLS handshake' };
  }
  // A TLS alert from the peer carries no err.code in some Node versions, only the OpenSSL text.
  if (sysCode === undefined && /alert|handshake failure|wrong version number/i.test(message)) {
    return { code: 'ssl_failed_handshake', error: message };
  }
  return null;
}

/**
 * A system error from a socket helper as a classified failure carrying the operation, the raw
 * error (as `error` in evidence) and the original as its cause. Our own failures, aborts and
 * programming errors pass through untouched (the runner tells those apart).
 */
export function failureOf(err: unknown, operation: Operation): unknown {
  if (err instanceof ProbeFailure || isAbort(err) || isProgrammingError(err)) return err;
  const c = classify(err, operation);
  const message = typeof (err as { message?: unknown })?.message === 'string' ? (err as Error).message : String(err);
  return new ProbeFailure(c.code, message, { ...c.evidence, error: c.error }, { cause: err, operation });
}

/**
 * The ws library's codes for frames a WebSocket peer must not send (a bad opcode, RSV bits, too
 * large): the peer's fault, although ws raises them as RangeErrors.
 */
function isPeerFrameCode(code: string): boolean {
  return code.startsWith('WS_ERR_');
}

/** A bug of ours (or a codec that let hostile bytes through), not something the network did. */
export function isProgrammingError(err: unknown): err is Error {
  if (!(err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError)) return false;
  const code = (err as { code?: unknown }).code;
  return !(typeof code === 'string' && isPeerFrameCode(code));
}

function isAbort(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}

/** Codes that mean "the path works but the call would sound bad", not "the path is broken". */
export const DEGRADATION_CODES: ReadonlySet<FailureCode> = new Set(['media_degraded', 'media_throttled', 'stream_cutoff']);
