/**
 * Certificate chain checks. Chains are built and signed by Signal's own library
 * (@signalapp/libsignal-client, via test/helpers/wacerts.ts), so signing and verification come
 * from independent implementations.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import { answerClientHello, WaNoiseClient, x25519KeyPairFromPrivate } from '../../src/protocol/noise.js';
import { connectionHeader } from '../../src/protocol/waframe.js';
import { encodeCertChain } from '../../src/protocol/waproto.js';
import {
  requireVerified,
  verifyCertChain,
  WA_ROOT_NAME,
  WA_ROOT_PUBLIC_KEY,
  WA_ROOT_SERIAL,
  type CertChainVerification,
} from '../../src/protocol/wacert.js';
import {
  buildLabCertChain,
  LAB_INTERMEDIATE_SERIAL,
  LAB_LEAF_SERIAL,
  labSign,
  newLabWhatsAppIdentity,
  newSigningKey,
  type LabCertChainOptions,
} from '../helpers/wacerts.js';
import { fuzzBytes, toHex } from '../helpers/bytes.js';

const NOW = 1_780_000_000; // a fixed clock (2026-05-28), so validity checks are exact
const DAY = 86_400;

const root = newSigningKey();
const intermediate = newSigningKey();
const serverStatic = x25519KeyPairFromPrivate(createHash('sha256').update('lab static').digest());

function chainWith(overrides: Partial<LabCertChainOptions> = {}) {
  return buildLabCertChain({ root, intermediate, leafKey: serverStatic.publicKey, now: NOW, ...overrides }).payload;
}
function verify(payload: Uint8Array, options: { now?: number; serverStatic?: Uint8Array; rootPublicKey?: Uint8Array } = {}) {
  return verifyCertChain(payload, {
    serverStatic: options.serverStatic ?? serverStatic.publicKey,
    now: options.now ?? NOW,
    rootPublicKey: options.rootPublicKey ?? root.publicKey,
  });
}
const expectFailure = (r: CertChainVerification, reason: string, failure = 'cert_chain_invalid') => {
  expect(r.verified).toBe(false);
  expect(r.reason).toBe(reason);
  expect(r.failure).toBe(failure);
};

describe("WhatsApp's root", () => {
  it('is "WhatsAppLongTerm1", serial 0, key 142375574d0a5871...', () => {
    expect(WA_ROOT_NAME).toBe('WhatsAppLongTerm1');
    expect(WA_ROOT_SERIAL).toBe(0);
    expect(toHex(WA_ROOT_PUBLIC_KEY)).toBe('142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b');
  });

  it('is the default root, so a chain signed by a lab root does not verify without configuration', () => {
    const r = verifyCertChain(chainWith(), { serverStatic: serverStatic.publicKey, now: NOW });
    expectFailure(r, 'intermediate_signature_invalid');
    expect(r.message).toBe('the root key did not sign the intermediate certificate');
  });
});

describe('verifyCertChain', () => {
  it('verifies a lab chain under the lab root, reporting serials and validity', () => {
    expect(verify(chainWith())).toEqual({
      verified: true,
      failure: null,
      reason: null,
      message: null,
      serials: { intermediate: LAB_INTERMEDIATE_SERIAL, intermediateIssuer: 0, leaf: LAB_LEAF_SERIAL, leafIssuer: LAB_INTERMEDIATE_SERIAL },
      validity: {
        intermediate: { notBefore: NOW - DAY, notAfter: NOW + 365 * DAY },
        leaf: { notBefore: NOW - DAY, notAfter: NOW + 365 * DAY },
      },
    });
  });

  it('is valid on the first and last second of the window (whatsmeow: before notBefore or after notAfter is invalid)', () => {
    expect(verify(chainWith(), { now: NOW - DAY }).verified).toBe(true);
    expect(verify(chainWith(), { now: NOW + 365 * DAY }).verified).toBe(true);
  });

  it('a chain signed by the wrong root: intermediate_signature_invalid, with what it saw in evidence', () => {
    const r = verify(chainWith({ root: newSigningKey() }));
    expectFailure(r, 'intermediate_signature_invalid');
    expect(r.serials.intermediate).toBe(LAB_INTERMEDIATE_SERIAL);
    expect(r.validity.leaf).toEqual({ notBefore: NOW - DAY, notAfter: NOW + 365 * DAY });
  });

  it('the leaf not signed by the intermediate key: leaf_signature_invalid', () => {
    const good = buildLabCertChain({ root, intermediate, leafKey: serverStatic.publicKey, now: NOW });
    const forged = encodeCertChain({
      intermediate: good.chain.intermediate!,
      leaf: { details: good.chain.leaf!.details!, signature: labSign(newSigningKey(), good.chain.leaf!.details!) },
    });
    expectFailure(verify(forged), 'leaf_signature_invalid');
  });

  it.each<[string, Partial<LabCertChainOptions>, string, number?]>([
    ['intermediate issued by another serial', { intermediateDetails: { issuerSerial: 5 } }, 'intermediate_issuer_not_root'],
    ['a 31-byte intermediate key', { intermediateDetails: { key: new Uint8Array(31) } }, 'intermediate_key_length'],
    ['an intermediate not yet valid', { intermediateDetails: { notBefore: NOW + 1 } }, 'intermediate_not_yet_valid'],
    ['an expired intermediate', { intermediateDetails: { notAfter: NOW - 1 } }, 'intermediate_expired'],
    ['a leaf issued by another serial', { leafDetails: { issuerSerial: LAB_INTERMEDIATE_SERIAL + 1 } }, 'leaf_issuer_mismatch'],
    ['a leaf for another key', { leafDetails: { key: new Uint8Array(32).fill(9) } }, 'leaf_key_mismatch'],
    ['a leaf not yet valid', { leafDetails: { notBefore: NOW + 1 } }, 'leaf_not_yet_valid'],
    ['an expired leaf', { leafDetails: { notAfter: NOW - 1 } }, 'leaf_expired'],
  ])('%s: %s', (_name, overrides, reason) => {
    expectFailure(verify(chainWith(overrides)), reason);
  });

  it('the intermediate validity is checked before the leaf issuer, as whatsmeow orders it', () => {
    const r = verify(chainWith({ intermediateDetails: { notAfter: NOW - 1 }, leafDetails: { issuerSerial: 99 } }));
    expect(r.reason).toBe('intermediate_expired');
    expect(r.message).toBe('intermediate certificate expired');
  });

  it('reads unset serials as 0, as whatsmeow\'s proto2 getters do', () => {
    const payload = chainWith({ intermediateDetails: { serial: undefined, issuerSerial: undefined }, leafDetails: { issuerSerial: undefined } });
    const r = verify(payload);
    expect(r.verified).toBe(true);
    expect(r.serials).toEqual({ intermediate: 0, intermediateIssuer: 0, leaf: LAB_LEAF_SERIAL, leafIssuer: 0 });
  });

  it('missing parts and wrong signature sizes', () => {
    const good = buildLabCertChain({ root, intermediate, leafKey: serverStatic.publicKey, now: NOW }).chain;
    expectFailure(verify(encodeCertChain({ intermediate: good.intermediate! })), 'missing_parts');
    expectFailure(verify(encodeCertChain({ leaf: { details: good.leaf!.details! }, intermediate: good.intermediate! })), 'missing_parts');
    expectFailure(verify(new Uint8Array(0)), 'missing_parts');
    const shortSig = { details: good.leaf!.details!, signature: good.leaf!.signature!.subarray(0, 63) };
    expectFailure(verify(encodeCertChain({ leaf: shortSig, intermediate: good.intermediate! })), 'bad_signature_length');
  });

  it('a payload or signed details that are not protobuf: proto_malformed', () => {
    expectFailure(verify(Uint8Array.of(0xff, 0xff)), 'malformed_chain', 'proto_malformed');
    const garbage = Uint8Array.of(0x0b, 0x01);
    const chain = encodeCertChain({
      intermediate: { details: garbage, signature: labSign(root, garbage) },
      leaf: { details: garbage, signature: labSign(intermediate, garbage) },
    });
    const r = verify(chain);
    expectFailure(r, 'malformed_details', 'proto_malformed');
    expect(r.message).toBe('intermediate details: protobuf: unsupported wire type 3');
    expect(r.serials.intermediate).toBeNull();
  });
});

describe('requireVerified', () => {
  it('returns for a verified chain and throws the failure code with the result as evidence otherwise', () => {
    expect(() => requireVerified(verify(chainWith()))).not.toThrow();
    const bad = verify(chainWith({ root: newSigningKey() }));
    try {
      requireVerified(bad);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ProbeFailure);
      expect((err as ProbeFailure).code).toBe('cert_chain_invalid');
      expect((err as ProbeFailure).message).toBe('the root key did not sign the intermediate certificate');
      expect((err as ProbeFailure).evidence).toEqual({ certChain: bad });
      expect(JSON.parse(JSON.stringify((err as ProbeFailure).evidence))).toEqual({ certChain: bad });
    }
    expect(() => requireVerified(verify(Uint8Array.of(0xff)))).toThrow(expect.objectContaining({ code: 'proto_malformed' }));
  });
});

describe('end to end: Noise round trip with a lab identity, then the chain', () => {
  it('the decrypted static key and chain verify under the lab root', () => {
    const lab = newLabWhatsAppIdentity(NOW);
    const header = connectionHeader(6, 3);
    const client = new WaNoiseClient({ header });
    const answer = answerClientHello({ header, clientHello: client.clientHello, static: lab.static, payload: lab.certChain.payload });
    const opened = client.readServerHello(answer.serverHello);
    const r = verifyCertChain(opened.certChain, { serverStatic: opened.serverStatic, now: NOW, rootPublicKey: lab.root.publicKey });
    expect(r.verified).toBe(true);
    // the same chain presented with another static key is not this server's
    const other = newLabWhatsAppIdentity(NOW);
    const swapped = answerClientHello({ header, clientHello: client.clientHello, static: other.static, payload: lab.certChain.payload });
    const opened2 = client.readServerHello(swapped.serverHello);
    expect(verifyCertChain(opened2.certChain, { serverStatic: opened2.serverStatic, now: NOW, rootPublicKey: lab.root.publicKey }).reason).toBe(
      'leaf_key_mismatch',
    );
  });
});

describe('fuzz: never throws, never verifies what was tampered with', () => {
  const good = chainWith();

  it('random payloads give proto_malformed or cert_chain_invalid', () => {
    for (let i = 0; i < 1000; i++) {
      const r = verify(fuzzBytes(`chain-${i}`, i % 400));
      expect(r.verified).toBe(false);
      expect(['proto_malformed', 'cert_chain_invalid']).toContain(r.failure);
    }
  });

  it('every single-byte change and every truncation of a valid chain fails', () => {
    for (let at = 0; at < good.length; at++) {
      const bytes = Uint8Array.from(good);
      bytes[at] = bytes[at]! ^ (1 << (at % 8));
      const r = verify(bytes);
      expect(r.verified, `byte ${at}`).toBe(false);
      expect(['proto_malformed', 'cert_chain_invalid']).toContain(r.failure);
    }
    for (let n = 0; n < good.length; n++) {
      const r = verify(good.subarray(0, n));
      expect(r.verified, `truncated to ${n}`).toBe(false);
      expect(['proto_malformed', 'cert_chain_invalid']).toContain(r.failure);
    }
  });
});
