/**
 * Lab certificate chains for WhatsApp's Noise handshake (root -> intermediate -> leaf), signed
 * with Signal's own library (@signalapp/libsignal-client, a devDependency), whose XEdDSA
 * signatures are the kind WhatsApp's chain carries. callprobe's src only verifies; signing for
 * tests and the lab server happens here, with an implementation independent of ours.
 */
import { PrivateKey } from '@signalapp/libsignal-client';
import { encodeCertChain, encodeCertDetails, type CertChain, type CertDetails } from '../../src/protocol/waproto.js';
import { generateX25519KeyPair, type X25519KeyPair } from '../../src/protocol/noise.js';

/** A signing key as libsignal has it, with its 32-byte Curve25519 public key (no 0x05 prefix). */
export interface LabSigningKey {
  privateKey: PrivateKey;
  publicKey: Uint8Array;
}

export function newSigningKey(): LabSigningKey {
  const privateKey = PrivateKey.generate();
  return { privateKey, publicKey: Uint8Array.from(privateKey.getPublicKey().getPublicKeyBytes()) };
}

/** libsignal's XEdDSA signature (64 bytes) of `message`. */
export function labSign(key: LabSigningKey | PrivateKey, message: Uint8Array): Uint8Array {
  const privateKey = key instanceof PrivateKey ? key : key.privateKey;
  return Uint8Array.from(privateKey.sign(new Uint8Array(message)));
}

export interface LabCertChainOptions {
  /** Signs the intermediate's details. */
  root: LabSigningKey | PrivateKey;
  /** Its public key goes into the intermediate's details; it signs the leaf's details. */
  intermediate: LabSigningKey | PrivateKey;
  /** The server's static X25519 public key, carried by the leaf. */
  leafKey: Uint8Array;
  /** Fields override the defaults below, to build broken chains for negative tests. */
  intermediateDetails?: Partial<CertDetails>;
  leafDetails?: Partial<CertDetails>;
  /** Unix seconds; default now. Validity defaults to [now - 1 day, now + 365 days]. */
  now?: number;
}

export interface LabCertChain {
  /** The serialized CertChain: the ServerHello payload. */
  payload: Uint8Array;
  chain: CertChain;
  intermediateDetails: CertDetails;
  leafDetails: CertDetails;
}

export const LAB_INTERMEDIATE_SERIAL = 7;
export const LAB_LEAF_SERIAL = 4242;

export function buildLabCertChain(options: LabCertChainOptions): LabCertChain {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const validity = { notBefore: now - 86_400, notAfter: now + 365 * 86_400 };
  const intermediatePrivate = options.intermediate instanceof PrivateKey ? options.intermediate : options.intermediate.privateKey;
  const intermediateDetails: CertDetails = {
    serial: LAB_INTERMEDIATE_SERIAL,
    issuerSerial: 0,
    key: Uint8Array.from(intermediatePrivate.getPublicKey().getPublicKeyBytes()),
    ...validity,
    ...options.intermediateDetails,
  };
  const leafDetails: CertDetails = {
    serial: LAB_LEAF_SERIAL,
    issuerSerial: intermediateDetails.serial,
    key: options.leafKey,
    ...validity,
    ...options.leafDetails,
  };
  const intermediateBytes = encodeCertDetails(intermediateDetails);
  const leafBytes = encodeCertDetails(leafDetails);
  const chain: CertChain = {
    leaf: { details: leafBytes, signature: labSign(intermediatePrivate, leafBytes) },
    intermediate: { details: intermediateBytes, signature: labSign(options.root, intermediateBytes) },
  };
  return { payload: encodeCertChain(chain), chain, intermediateDetails, leafDetails };
}

/** Everything a lab WhatsApp server needs: a root (its public key goes to the probe's config), a static key and its chain. */
export interface LabWhatsAppIdentity {
  root: LabSigningKey;
  intermediate: LabSigningKey;
  static: X25519KeyPair;
  certChain: LabCertChain;
}

export function newLabWhatsAppIdentity(now?: number): LabWhatsAppIdentity {
  const root = newSigningKey();
  const intermediate = newSigningKey();
  const staticKey = generateX25519KeyPair();
  const certChain = buildLabCertChain({ root, intermediate, leafKey: staticKey.publicKey, ...(now === undefined ? {} : { now }) });
  return { root, intermediate, static: staticKey, certChain };
}
