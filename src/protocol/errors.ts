import { ProbeFailure } from '../failure.js';

/**
 * Codecs are pure: bytes in, values out. Bytes that do not parse raise `proto_malformed`;
 * bytes that parse but are not an answer to us raise `proto_mismatch`; a protocol-level error
 * from the server raises `proto_error`. Codecs never throw anything else on hostile input.
 */
export function malformed(message: string, evidence: Record<string, unknown> = {}): ProbeFailure {
  return new ProbeFailure('proto_malformed', message, evidence);
}

export function mismatch(message: string, evidence: Record<string, unknown> = {}): ProbeFailure {
  return new ProbeFailure('proto_mismatch', message, evidence);
}

export function protocolError(message: string, evidence: Record<string, unknown> = {}): ProbeFailure {
  return new ProbeFailure('proto_error', message, evidence);
}
