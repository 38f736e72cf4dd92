/**
 * Verification of Signal-style Curve25519 signatures, the kind WhatsApp's Noise certificate chain
 * carries (whatsmeow handshake.go verifies them with go.mau.fi/libsignal ecc.VerifySignature).
 *
 * The public key is a Montgomery u-coordinate, which Ed25519 cannot use directly. libsignal's
 * signer (libsignal `rust/core/src/curve/curve25519.rs` calculate_signature) signs with the
 * Edwards form of the key as is and stores that Edwards point's sign bit in the top bit of the
 * signature's last byte (unused, since s < 2^253). So verification is: map u to the Edwards y
 * coordinate, y = (u - 1) / (u + 1) (RFC 7748 §4.1 birational map), attach the sign bit from the
 * signature, clear that bit from the signature, and run a standard Ed25519 verification (RFC 8032
 * §5.1.7), which checks sB = R + SHA-512(R || A || M)·A exactly as libsignal's verify_signature does.
 *
 * The field arithmetic of the map comes from @noble/curves (audited); the Ed25519 verification
 * from node:crypto (OpenSSL). Nothing here implements curve arithmetic itself.
 */
import { createPublicKey, verify } from 'node:crypto';
import { Field } from '@noble/curves/abstract/modular.js';

export const CURVE25519_KEY_BYTES = 32;
export const XEDDSA_SIGNATURE_BYTES = 64;

/** DER SubjectPublicKeyInfo prefix for a raw Ed25519 key (RFC 8410 §4, OID 1.3.101.112). */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * GF(2^255 - 19), little-endian as Curve25519 and Ed25519 encode it (RFC 7748 §5, RFC 8032 §5.1.2):
 * noble's field alone, without loading its curves (their threshold-signature and FFT modules
 * would cost the daemon memory for nothing).
 */
const Fp = Field(2n ** 255n - 19n, { isLE: true });

/**
 * The compressed Edwards point for Montgomery u with the given sign bit, or null when u has no
 * Edwards image (u = -1). Like curve25519-dalek's MontgomeryPoint::to_edwards (which libsignal
 * uses), the top bit of u is ignored and u is reduced mod p.
 */
export function montgomeryToEdwards(u: Uint8Array, signBit: 0 | 1): Uint8Array | null {
  if (u.length !== CURVE25519_KEY_BYTES) return null;
  const masked = Uint8Array.from(u);
  masked[31]! &= 0x7f;
  const x = Fp.create(Fp.fromBytes(masked, true));
  const denominator = Fp.add(x, Fp.ONE);
  if (Fp.is0(denominator)) return null;
  const y = Fp.div(Fp.sub(x, Fp.ONE), denominator);
  const out = Fp.toBytes(y);
  out[31]! |= signBit << 7;
  return out;
}

/**
 * True when `signature` is a valid XEdDSA (libsignal) signature of `message` by the Curve25519
 * public key `publicKey` (32 raw bytes, no 0x05 type prefix). Never throws: wrong lengths and
 * keys that are not curve points are simply not valid signatures.
 */
export function xeddsaVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== CURVE25519_KEY_BYTES || signature.length !== XEDDSA_SIGNATURE_BYTES) return false;
  const signBit = (signature[63]! >> 7) as 0 | 1;
  const edwardsKey = montgomeryToEdwards(publicKey, signBit);
  if (edwardsKey === null) return false;
  const edSignature = Uint8Array.from(signature);
  edSignature[63]! &= 0x7f;
  // libsignal's verify_signature rejects s >= 2^253 (any of the next three bits set); OpenSSL
  // goes further and requires s < L (RFC 8032 §5.1.7), which every honestly made signature meets.
  if ((edSignature[63]! & 0xe0) !== 0) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, edwardsKey]), format: 'der', type: 'spki' });
    return verify(null, message, key, edSignature);
  } catch {
    // y not on the curve (OpenSSL cannot decode the point): not a valid key, so not a valid signature.
    return false;
  }
}
