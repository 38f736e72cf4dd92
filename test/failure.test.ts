import { describe, expect, it } from 'vitest';
import { FAILURE_CODES, ProbeFailure, classify, failureOf, isProgrammingError } from '../src/failure.js';

function sysErr(code: string, message = code): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

describe('classify', () => {
  it.each([
    ['ECONNREFUSED', 'connection_refused'],
    ['ECONNRESET', 'connection_reset'],
    ['EPIPE', 'connection_reset'],
    ['ETIMEDOUT', 'generic_timeout_error'],
    ['EHOSTUNREACH', 'host_unreachable'],
    ['ENETUNREACH', 'network_unreachable'],
    ['ENOTFOUND', 'dns_nxdomain_error'],
    ['ENODATA', 'dns_no_answer'],
    ['ESERVFAIL', 'dns_servfail_error'],
    ['EREFUSED', 'dns_refused_error'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'ssl_invalid_hostname'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'ssl_unknown_authority'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'ssl_unknown_authority'],
    ['CERT_HAS_EXPIRED', 'ssl_invalid_certificate'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 'ssl_failed_handshake'],
    ['ERR_SSL_SOMETHING_NEW', 'ssl_failed_handshake'],
  ])('maps %s to %s and keeps the raw code', (code, expected) => {
    expect(classify(sysErr(code))).toEqual({ code: expected, error: code, evidence: {} });
  });

  it('tells a FIN during the TLS handshake (eof_error) from a real reset', () => {
    const fin = sysErr('ECONNRESET', 'Client network socket disconnected before secure TLS connection was established');
    expect(classify(fin, 'tls').code).toBe('eof_error');
    expect(classify(sysErr('ECONNRESET', 'read ECONNRESET'), 'tls').code).toBe('connection_reset');
  });

  it('applies the TLS handshake rules only to the TLS handshake (the classifier goes by operation)', () => {
    const fin = sysErr('ECONNRESET', 'Client network socket disconnected before secure TLS connection was established');
    expect(classify(fin, 'read').code).toBe('connection_reset');
    // An RST read during the handshake carries a syscall: it stays a reset.
    expect(classify(Object.assign(fin, { syscall: 'read' }), 'tls').code).toBe('connection_reset');
    expect(classify(new Error('sslv3 alert handshake failure'), 'tls')).toEqual({ code: 'ssl_failed_handshake', error: 'sslv3 alert handshake failure', evidence: {} });
    expect(classify(new Error('sslv3 alert handshake failure'), 'read').code).toBe('unknown_failure');
  });

  it('maps a WebSocket peer\'s invalid frame (a RangeError with a WS_ERR_ code) to proto_malformed', () => {
    const frame = Object.assign(new RangeError('Invalid WebSocket frame: invalid opcode 5'), { code: 'WS_ERR_INVALID_OPCODE' });
    expect(classify(frame, 'read')).toEqual({ code: 'proto_malformed', error: 'WS_ERR_INVALID_OPCODE', evidence: {} });
    expect(isProgrammingError(frame)).toBe(false);
    expect(isProgrammingError(new TypeError('x is undefined'))).toBe(true);
  });

  it('wraps a system error with its operation and raw code; our own failures pass through', () => {
    const wrapped = failureOf(sysErr('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:9'), 'connect') as ProbeFailure;
    expect(wrapped).toBeInstanceOf(ProbeFailure);
    expect({ code: wrapped.code, operation: wrapped.operation, evidence: wrapped.evidence }).toEqual({
      code: 'connection_refused',
      operation: 'connect',
      evidence: { error: 'ECONNREFUSED' },
    });
    const own = new ProbeFailure('proto_mismatch', 'not ours');
    expect(failureOf(own, 'read')).toBe(own);
    const bug = new TypeError('bug');
    expect(failureOf(bug, 'read')).toBe(bug);
  });

  it('passes a ProbeFailure through with its evidence', () => {
    const f = new ProbeFailure('proto_mismatch', 'nonce not echoed', { nonce: 'ab' });
    expect(classify(f)).toEqual({ code: 'proto_mismatch', error: 'nonce not echoed', evidence: { nonce: 'ab' } });
  });

  it('keeps the raw text of anything unmapped as unknown_failure', () => {
    expect(classify(sysErr('EWEIRD', 'strange'))).toEqual({ code: 'unknown_failure', error: 'EWEIRD: strange', evidence: {} });
    expect(classify('boom')).toEqual({ code: 'unknown_failure', error: 'boom', evidence: {} });
  });

  it('maps an AbortError to interrupted', () => {
    const abort = Object.assign(new Error('aborted'), { name: 'AbortError' });
    expect(classify(abort).code).toBe('interrupted');
  });

  it('uses OONI strings and snake_case for every code', () => {
    for (const c of FAILURE_CODES) expect(c).toMatch(/^[a-z0-9]+(_[a-z0-9]+)*$/);
    for (const ooni of ['dns_nxdomain_error', 'generic_timeout_error', 'connection_refused', 'connection_reset', 'eof_error', 'ssl_invalid_hostname', 'ssl_unknown_authority', 'ssl_failed_handshake', 'unknown_failure', 'interrupted']) {
      expect(FAILURE_CODES).toContain(ooni);
    }
  });
});
