/**
 * XEdDSA verification, checked against Signal's own implementation: a published libsignal test
 * vector, and signatures made live by @signalapp/libsignal-client (Signal's Rust library, prebuilt),
 * which is the signature scheme of WhatsApp's Noise certificates.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { PrivateKey, PublicKey } from '@signalapp/libsignal-client';
import { describe, expect, it } from 'vitest';
import { montgomeryToEdwards, xeddsaVerify } from '../../src/protocol/xeddsa.js';
import { WA_ROOT_PUBLIC_KEY } from '../../src/protocol/wacert.js';
import { encodeCertDetails } from '../../src/protocol/waproto.js';
import { fromHexUint8, fuzzBytes, toHex } from '../helpers/bytes.js';

/**
 * libsignal `rust/core/src/curve/curve25519.rs` test_signature (signalapp/libsignal, checked at
 * b056faa6, 2026): Alice's identity key signs her serialized ephemeral public key (0x05 || key).
 * Its last byte 0x88 has the top bit set, so it exercises the Edwards sign bit.
 */
const LIBSIGNAL_VECTOR = {
  privateKey: fromHexUint8('c0972484 12e58bf0 5df48796 82051327 94178e36 7637f581 8f81e0e6 ce73e865'),
  publicKey: fromHexUint8('ab7e717d 4a163b7d 9a1d8071 dfe9dcf8 cdcd1cea 3339b635 6be84d88 7e322c64'),
  message: fromHexUint8('05 edce9d9c 415ca78c b7252e72 c2c4a554 d3eb2948 5a0e1d50 3118d1a8 2d99fb4a'),
  signature: fromHexUint8(
    '5de88ca9 a89b4a11 5da79109 c67c9c74 64a3e418 0274f1cb 8c63c298 4e286dfb' +
      'ede82deb 9dcd9fae 0bfbb821 569b3d90 01bd8130 cd11d486 cef047bd 60b86e88',
  ),
};

describe('montgomeryToEdwards', () => {
  it('maps the X25519 base point u = 9 to the Ed25519 base point y = 4/5 (RFC 7748 §4.1, RFC 8032 §5.1)', () => {
    const u9 = new Uint8Array(32);
    u9[0] = 9;
    expect(toHex(montgomeryToEdwards(u9, 0)!)).toBe('5866666666666666666666666666666666666666666666666666666666666666');
    expect(toHex(montgomeryToEdwards(u9, 1)!)).toBe('58666666666666666666666666666666666666666666666666666666666666e6');
  });

  it('has no image for u = -1 and refuses keys that are not 32 bytes', () => {
    const minusOne = fromHexUint8('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
    expect(montgomeryToEdwards(minusOne, 0)).toBeNull();
    expect(montgomeryToEdwards(new Uint8Array(31), 0)).toBeNull();
  });

  it('ignores the top bit of u, as curve25519-dalek does', () => {
    const u = Uint8Array.from(WA_ROOT_PUBLIC_KEY);
    const withTopBit = Uint8Array.from(u);
    withTopBit[31]! |= 0x80;
    expect(toHex(montgomeryToEdwards(withTopBit, 0)!)).toBe(toHex(montgomeryToEdwards(u, 0)!));
  });
});

describe('xeddsaVerify: published libsignal vector', () => {
  it('libsignal-client itself accepts the vector (sanity of the transcription)', () => {
    const key = PrivateKey.deserialize(new Uint8Array(LIBSIGNAL_VECTOR.privateKey));
    expect(toHex(key.getPublicKey().getPublicKeyBytes())).toBe(toHex(LIBSIGNAL_VECTOR.publicKey));
    const pub = PublicKey.deserialize(new Uint8Array(Buffer.concat([Uint8Array.of(5), LIBSIGNAL_VECTOR.publicKey])));
    expect(pub.verify(new Uint8Array(LIBSIGNAL_VECTOR.message), new Uint8Array(LIBSIGNAL_VECTOR.signature))).toBe(true);
  });

  it('verifies it', () => {
    expect(xeddsaVerify(LIBSIGNAL_VECTOR.publicKey, LIBSIGNAL_VECTOR.message, LIBSIGNAL_VECTOR.signature)).toBe(true);
  });

  it('rejects it with the low bit of any one of the 64 signature bytes flipped (as libsignal\'s test does)', () => {
    for (let i = 0; i < 64; i++) {
      const sig = Uint8Array.from(LIBSIGNAL_VECTOR.signature);
      sig[i]! ^= 0x01;
      expect(xeddsaVerify(LIBSIGNAL_VECTOR.publicKey, LIBSIGNAL_VECTOR.message, sig), `byte ${i}`).toBe(false);
    }
  });

  it('rejects it with the sign bit flipped, a changed message or another key', () => {
    const sig = Uint8Array.from(LIBSIGNAL_VECTOR.signature);
    sig[63]! ^= 0x80;
    expect(xeddsaVerify(LIBSIGNAL_VECTOR.publicKey, LIBSIGNAL_VECTOR.message, sig)).toBe(false);
    const msg = Uint8Array.from(LIBSIGNAL_VECTOR.message);
    msg[1]! ^= 0x01;
    expect(xeddsaVerify(LIBSIGNAL_VECTOR.publicKey, msg, LIBSIGNAL_VECTOR.signature)).toBe(false);
    expect(xeddsaVerify(WA_ROOT_PUBLIC_KEY, LIBSIGNAL_VECTOR.message, LIBSIGNAL_VECTOR.signature)).toBe(false);
  });

  it('rejects s >= 2^253 the way libsignal does (top three bits below the sign bit)', () => {
    for (const bit of [0x40, 0x20]) {
      const sig = Uint8Array.from(LIBSIGNAL_VECTOR.signature);
      sig[63]! |= bit;
      expect(xeddsaVerify(LIBSIGNAL_VECTOR.publicKey, LIBSIGNAL_VECTOR.message, sig)).toBe(false);
    }
  });
});

describe('xeddsaVerify: cross-check with @signalapp/libsignal-client', () => {
  it('verifies certificate details signed by libsignal with fresh keys, and rejects every tampering', () => {
    const signBits = new Set<number>();
    for (let i = 0; i < 60; i++) {
      const signer = PrivateKey.generate();
      const other = PrivateKey.generate();
      const publicKey = Uint8Array.from(signer.getPublicKey().getPublicKeyBytes());
      const details = encodeCertDetails({
        serial: i + 1,
        issuerSerial: 0,
        key: fuzzBytes(`key-${i}`, 32),
        notBefore: 1_700_000_000 + i,
        notAfter: 1_800_000_000 + i,
      });
      const signature = Uint8Array.from(signer.sign(new Uint8Array(details)));
      expect(signature).toHaveLength(64);
      signBits.add(signature[63]! >> 7);

      expect(xeddsaVerify(publicKey, details, signature)).toBe(true);

      const bit = i % 512;
      const flippedSig = Uint8Array.from(signature);
      flippedSig[bit >> 3]! ^= 1 << (bit & 7);
      expect(xeddsaVerify(publicKey, details, flippedSig), `signature bit ${bit}`).toBe(false);

      const flippedDetails = Uint8Array.from(details);
      flippedDetails[i % details.length]! ^= 0x04;
      expect(xeddsaVerify(publicKey, flippedDetails, signature)).toBe(false);

      const otherKey = Uint8Array.from(other.getPublicKey().getPublicKeyBytes());
      expect(xeddsaVerify(otherKey, details, signature)).toBe(false);
    }
    // Both Edwards signs occurred, so both conversions were exercised.
    expect([...signBits].sort()).toEqual([0, 1]);
  });

  it('agrees with libsignal on random signatures under random keys (both reject)', () => {
    for (let i = 0; i < 200; i++) {
      const key = fuzzBytes(`k-${i}`, 32);
      const sig = fuzzBytes(`s-${i}`, 64);
      const msg = fuzzBytes(`m-${i}`, i % 50);
      expect(xeddsaVerify(key, msg, sig)).toBe(false);
      const pub = PublicKey.deserialize(new Uint8Array(Buffer.concat([Uint8Array.of(5), key])));
      expect(pub.verify(new Uint8Array(msg), new Uint8Array(sig))).toBe(false);
    }
  });

  it('never throws on inputs of the wrong size', () => {
    expect(xeddsaVerify(new Uint8Array(31), new Uint8Array(1), new Uint8Array(64))).toBe(false);
    expect(xeddsaVerify(new Uint8Array(32), new Uint8Array(1), new Uint8Array(63))).toBe(false);
    expect(xeddsaVerify(new Uint8Array(32), new Uint8Array(0), new Uint8Array(64))).toBe(false);
  });
});

describe("WhatsApp's published root key", () => {
  it('parses as a valid Curve25519 public key in libsignal, and maps to Edwards points on the curve', () => {
    const pub = PublicKey.deserialize(new Uint8Array(Buffer.concat([Uint8Array.of(5), WA_ROOT_PUBLIC_KEY])));
    expect(toHex(pub.getPublicKeyBytes())).toBe('142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b');
    for (const sign of [0, 1] as const) {
      const edwards = montgomeryToEdwards(WA_ROOT_PUBLIC_KEY, sign)!;
      expect(() => ed25519.Point.fromBytes(edwards)).not.toThrow();
    }
  });
});
