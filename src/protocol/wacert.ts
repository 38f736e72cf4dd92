/**
 * Verification of the certificate chain a WhatsApp server sends, encrypted, in its ServerHello
 * payload. The checks and their order are whatsmeow's (`handshake.go` verifyServerCert; Baileys
 * `src/Utils/noise-handler.ts` makes a subset of them):
 *   the root key signs intermediate.details; intermediate.issuerSerial = root serial (0);
 *   intermediate.key (32 bytes) signs leaf.details; now within the intermediate's validity;
 *   leaf.issuerSerial = intermediate.serial; leaf.key = the decrypted static key; now within the
 *   leaf's validity.
 * Signatures are XEdDSA (xeddsa.ts). The root key and "now" are parameters so that the lab can
 * sign its own chain and tests can pin the clock.
 */
import { timingSafeEqual } from 'node:crypto';
import { ProbeFailure, type FailureCode } from '../failure.js';
import { CURVE25519_KEY_BYTES, XEDDSA_SIGNATURE_BYTES, xeddsaVerify } from './xeddsa.js';
import { decodeCertChain, decodeCertDetails, type CertDetails } from './waproto.js';

/**
 * WhatsApp's published Noise root, "WhatsAppLongTerm1", serial 0 (whatsmeow handshake.go
 * WACertPubKey and WACertIssuerSerial; Baileys src/Defaults/index.ts WA_CERT_DETAILS).
 */
export const WA_ROOT_NAME = 'WhatsAppLongTerm1';
export const WA_ROOT_SERIAL = 0;
export const WA_ROOT_PUBLIC_KEY: Uint8Array = Buffer.from(
  '142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b',
  'hex',
);

/** Why a chain did not verify: stable strings for evidence, one per check. */
export type CertChainReason =
  | 'malformed_chain'
  | 'missing_parts'
  | 'bad_signature_length'
  | 'intermediate_signature_invalid'
  | 'malformed_details'
  | 'intermediate_issuer_not_root'
  | 'intermediate_key_length'
  | 'leaf_signature_invalid'
  | 'intermediate_not_yet_valid'
  | 'intermediate_expired'
  | 'leaf_issuer_mismatch'
  | 'leaf_key_mismatch'
  | 'leaf_not_yet_valid'
  | 'leaf_expired';

/** Unix seconds, as the certificate states them. */
export interface Validity {
  notBefore: number;
  notAfter: number;
}

export interface CertChainVerification {
  verified: boolean;
  /** null when verified; `proto_malformed` when the payload does not parse; else `cert_chain_invalid`. */
  failure: Extract<FailureCode, 'proto_malformed' | 'cert_chain_invalid'> | null;
  reason: CertChainReason | null;
  message: string | null;
  /** As the certificates state them (unset proto2 integers read as 0, as whatsmeow's getters do); null if unreadable. */
  serials: {
    intermediate: number | null;
    intermediateIssuer: number | null;
    leaf: number | null;
    leafIssuer: number | null;
  };
  validity: { intermediate: Validity | null; leaf: Validity | null };
}

export interface VerifyCertChainOptions {
  /** The server's static key as decrypted from the ServerHello. */
  serverStatic: Uint8Array;
  /** Unix seconds. */
  now: number;
  /** Defaults to WhatsApp's published root; the lab passes its own. */
  rootPublicKey?: Uint8Array;
  rootSerial?: number;
}

/**
 * Verifies the decrypted ServerHello payload. Never throws: the result says what was seen and,
 * when it did not verify, the first check that failed. `requireVerified` turns that into a
 * ProbeFailure for a phase.
 */
export function verifyCertChain(certChain: Uint8Array, options: VerifyCertChainOptions): CertChainVerification {
  const rootKey = options.rootPublicKey ?? WA_ROOT_PUBLIC_KEY;
  const rootSerial = options.rootSerial ?? WA_ROOT_SERIAL;
  const result: CertChainVerification = {
    verified: false,
    failure: null,
    reason: null,
    message: null,
    serials: { intermediate: null, intermediateIssuer: null, leaf: null, leafIssuer: null },
    validity: { intermediate: null, leaf: null },
  };
  const fail = (reason: CertChainReason, message: string): CertChainVerification => {
    const malformedInput = reason === 'malformed_chain' || reason === 'malformed_details';
    return { ...result, failure: malformedInput ? 'proto_malformed' : 'cert_chain_invalid', reason, message };
  };

  const chain = tryParse(() => decodeCertChain(certChain));
  if (chain instanceof ProbeFailure) return fail('malformed_chain', `certificate chain: ${chain.message}`);
  const { leaf, intermediate } = chain;
  if (!leaf?.details || !leaf.signature || !intermediate?.details || !intermediate.signature) {
    return fail('missing_parts', 'certificate chain lacks a leaf or intermediate details or signature');
  }

  // Read both details up front so the evidence shows serials and validity whatever fails later;
  // they are trusted only once their signature has verified.
  const intermediateDetails = tryParse(() => decodeCertDetails(intermediate.details!));
  const leafDetails = tryParse(() => decodeCertDetails(leaf.details!));
  if (!(intermediateDetails instanceof ProbeFailure)) {
    result.serials.intermediate = intermediateDetails.serial ?? 0;
    result.serials.intermediateIssuer = intermediateDetails.issuerSerial ?? 0;
    result.validity.intermediate = validityOf(intermediateDetails);
  }
  if (!(leafDetails instanceof ProbeFailure)) {
    result.serials.leaf = leafDetails.serial ?? 0;
    result.serials.leafIssuer = leafDetails.issuerSerial ?? 0;
    result.validity.leaf = validityOf(leafDetails);
  }

  if (intermediate.signature.length !== XEDDSA_SIGNATURE_BYTES || leaf.signature.length !== XEDDSA_SIGNATURE_BYTES) {
    return fail('bad_signature_length', `certificate signatures must be ${XEDDSA_SIGNATURE_BYTES} bytes`);
  }
  if (!xeddsaVerify(rootKey, intermediate.details, intermediate.signature)) {
    return fail('intermediate_signature_invalid', 'the root key did not sign the intermediate certificate');
  }
  if (intermediateDetails instanceof ProbeFailure) {
    return fail('malformed_details', `intermediate details: ${intermediateDetails.message}`);
  }
  if ((intermediateDetails.issuerSerial ?? 0) !== rootSerial) {
    return fail('intermediate_issuer_not_root', `intermediate issuer serial ${intermediateDetails.issuerSerial ?? 0}, expected ${rootSerial}`);
  }
  const intermediateKey = intermediateDetails.key;
  if (intermediateKey?.length !== CURVE25519_KEY_BYTES) {
    return fail('intermediate_key_length', `intermediate key is ${intermediateKey?.length ?? 0} bytes, expected ${CURVE25519_KEY_BYTES}`);
  }
  if (!xeddsaVerify(intermediateKey, leaf.details, leaf.signature)) {
    return fail('leaf_signature_invalid', 'the intermediate key did not sign the leaf certificate');
  }
  const intermediateTime = checkTime(result.validity.intermediate!, options.now);
  if (intermediateTime) return fail(`intermediate_${intermediateTime}`, `intermediate certificate ${intermediateTime.replaceAll('_', ' ')}`);
  if (leafDetails instanceof ProbeFailure) {
    return fail('malformed_details', `leaf details: ${leafDetails.message}`);
  }
  if ((leafDetails.issuerSerial ?? 0) !== (intermediateDetails.serial ?? 0)) {
    return fail('leaf_issuer_mismatch', `leaf issuer serial ${leafDetails.issuerSerial ?? 0}, intermediate serial ${intermediateDetails.serial ?? 0}`);
  }
  if (!sameBytes(leafDetails.key, options.serverStatic)) {
    return fail('leaf_key_mismatch', "the leaf certificate's key is not the server's decrypted static key");
  }
  const leafTime = checkTime(result.validity.leaf!, options.now);
  if (leafTime) return fail(`leaf_${leafTime}`, `leaf certificate ${leafTime.replaceAll('_', ' ')}`);
  return { ...result, verified: true };
}

/** Throws the result's failure as a ProbeFailure (evidence: the whole result); returns when verified. */
export function requireVerified(result: CertChainVerification): void {
  if (result.verified) return;
  throw new ProbeFailure(result.failure ?? 'cert_chain_invalid', result.message ?? 'certificate chain did not verify', {
    certChain: result,
  });
}

function validityOf(d: CertDetails): Validity {
  return { notBefore: d.notBefore ?? 0, notAfter: d.notAfter ?? 0 };
}

/** whatsmeow checkCertValidity: invalid when now < notBefore or now > notAfter. */
function checkTime(v: Validity, now: number): 'not_yet_valid' | 'expired' | null {
  if (now < v.notBefore) return 'not_yet_valid';
  if (now > v.notAfter) return 'expired';
  return null;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && a.length === b.length && timingSafeEqual(a, b);
}

function tryParse<T>(parse: () => T): T | ProbeFailure {
  try {
    return parse();
  } catch (err) {
    if (err instanceof ProbeFailure) return err;
    throw err;
  }
}
