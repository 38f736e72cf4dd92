/**
 * WhatsApp's Noise handshake, first round trip only: the client's ClientHello and the reading of
 * the ServerHello (decrypting the server's static key and certificate chain), plus the server side
 * of the same round trip so a lab server can answer like WhatsApp does. No ClientFinish, no
 * transport keys: the probe stops once it knows a real Noise peer answered our own ephemeral.
 *
 * Sources: Noise spec rev. 34 §5.1-5.2 (CipherState, SymmetricState), §12.6 (AESGCM nonce),
 * §12.8 (SHA256); whatsmeow `socket/noisehandshake.go` and `handshake.go`; Baileys
 * `src/Utils/noise-handler.ts`. docs/protocols.md#the-first-round-trip has the byte layout.
 *
 * WhatsApp's deviation from Noise_XX: the first message's empty payload is not hashed (the spec's
 * EncryptAndHash of an empty payload with no key would be MixHash("")); everything else is
 * the spec's symmetric state with HKDF-SHA256 and AES-256-GCM.
 */
import { ProbeFailure } from '../failure.js';
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
} from 'node:crypto';
import { malformed, mismatch } from './errors.js';
import { encodeFrame } from './waframe.js';
import { decodeHandshakeMessage, encodeHandshakeMessage } from './waproto.js';

/**
 * whatsmeow socket/constants.go NoiseStartPattern, Baileys Defaults NOISE_MODE. Being exactly 32
 * bytes (HASHLEN) it is used raw as the initial h and ck, which is also what the Noise spec's
 * zero-padding of "Noise_XX_25519_AESGCM_SHA256" (28 bytes) gives (Noise spec §5.2 InitializeSymmetric).
 */
export const NOISE_PROTOCOL_NAME = 'Noise_XX_25519_AESGCM_SHA256\0\0\0\0';

const HASH_BYTES = 32; // SHA-256 (Noise spec §12.8 HASHLEN)
const KEY_BYTES = 32; // AES-256 key, X25519 keys (RFC 7748 §5)
const GCM_TAG_BYTES = 16; // Noise spec §12.6: AESGCM appends a 16-byte tag
const GCM_IV_BYTES = 12;
/** A 32-byte X25519 key sealed with AES-GCM: the ServerHello's `static` (whatsmeow checks 32 after decryption). */
const ENCRYPTED_STATIC_BYTES = KEY_BYTES + GCM_TAG_BYTES;
const MAX_NONCE = 0xffff_ffff; // whatsmeow and Baileys keep the counter in a uint32

/** DER prefixes for raw X25519 keys (RFC 8410 §7 PKCS#8 and §4 SubjectPublicKeyInfo, OID 1.3.101.110). */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export interface X25519KeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export function generateX25519KeyPair(): X25519KeyPair {
  const { privateKey } = generateKeyPairSync('x25519');
  return keyPairFromObject(privateKey);
}

/** The key pair for a given 32-byte private key (tests use fixed keys to get fixed vectors). */
export function x25519KeyPairFromPrivate(privateKey: Uint8Array): X25519KeyPair {
  return keyPairFromObject(privateKeyObject(privateKey));
}

function keyPairFromObject(key: KeyObject): X25519KeyPair {
  const jwk = key.export({ format: 'jwk' });
  return { privateKey: Buffer.from(jwk.d!, 'base64url'), publicKey: Buffer.from(jwk.x!, 'base64url') };
}

function privateKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== KEY_BYTES) throw new RangeError(`X25519 private key must be ${KEY_BYTES} bytes`);
  return createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
}

/**
 * X25519(privateKey, publicKey). A peer key of the wrong size or of low order (shared secret all
 * zero, which OpenSSL refuses) is `proto_malformed`: it cannot be a real Noise key.
 */
export function x25519(privateKey: Uint8Array, publicKey: Uint8Array, what = 'peer key'): Uint8Array {
  if (publicKey.length !== KEY_BYTES) throw malformed(`${what} is ${publicKey.length} bytes, expected ${KEY_BYTES}`);
  try {
    const pub = createPublicKey({ key: Buffer.concat([X25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
    return diffieHellman({ privateKey: privateKeyObject(privateKey), publicKey: pub });
  } catch {
    throw malformed(`${what} is not a usable X25519 key`, { key: Buffer.from(publicKey).toString('hex') });
  }
}

function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  return hash.digest();
}

/** Noise spec §12.6: 32 bits of zeros then the 64-bit big-endian nonce; WhatsApp's counter is 32-bit. */
function gcmIv(n: number): Buffer {
  const iv = Buffer.alloc(GCM_IV_BYTES);
  iv.writeUInt32BE(n, 8);
  return iv;
}

/** Which handshake value a decryption opened, for evidence. */
export type SealedPart = 'static' | 'payload';

/**
 * The Noise SymmetricState with its CipherState (Noise spec §5.1-5.2), SHA-256, HKDF-SHA256 and
 * AES-256-GCM. HKDF(ck, ikm) with two outputs is RFC 5869 HKDF with salt = ck, empty info, 64
 * bytes, split in halves: new ck, then k (whatsmeow extractAndExpand, Baileys localHKDF).
 */
export class WaSymmetricState {
  private h: Buffer;
  private ck: Buffer;
  private k: Buffer | null = null;
  private n = 0;

  constructor(from?: WaSymmetricState) {
    if (from) {
      this.h = Buffer.from(from.h);
      this.ck = Buffer.from(from.ck);
      this.k = from.k && Buffer.from(from.k);
      this.n = from.n;
    } else {
      this.h = Buffer.from(NOISE_PROTOCOL_NAME, 'latin1');
      this.ck = Buffer.from(this.h);
    }
  }

  clone(): WaSymmetricState {
    return new WaSymmetricState(this);
  }

  /** The transcript hash h (a copy). */
  get handshakeHash(): Uint8Array {
    return Uint8Array.from(this.h);
  }

  /** The chaining key ck (a copy). */
  get chainingKey(): Uint8Array {
    return Uint8Array.from(this.ck);
  }

  mixHash(data: Uint8Array): void {
    this.h = sha256(this.h, data);
  }

  mixKey(inputKeyMaterial: Uint8Array): void {
    const out = Buffer.from(hkdfSync('sha256', inputKeyMaterial, this.ck, new Uint8Array(0), 2 * HASH_BYTES));
    this.ck = out.subarray(0, HASH_BYTES);
    this.k = out.subarray(HASH_BYTES, HASH_BYTES + KEY_BYTES);
    this.n = 0;
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const cipher = createCipheriv('aes-256-gcm', this.key(), gcmIv(this.nextNonce()));
    cipher.setAAD(this.h);
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  /**
   * Opens `ciphertext` with ad = h. A failed authentication is `proto_mismatch`: the bytes were
   * not sealed under keys derived from our own ephemeral, so they are not an answer to us.
   */
  decryptAndHash(ciphertext: Uint8Array, part: SealedPart): Uint8Array {
    if (ciphertext.length < GCM_TAG_BYTES) {
      throw malformed(`encrypted ${part} is ${ciphertext.length} bytes, shorter than the GCM tag`, { part });
    }
    const decipher = createDecipheriv('aes-256-gcm', this.key(), gcmIv(this.nextNonce()));
    decipher.setAAD(this.h);
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - GCM_TAG_BYTES));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - GCM_TAG_BYTES)), decipher.final()]);
    } catch {
      throw mismatch(`encrypted ${part} does not authenticate under our handshake keys: not an answer to our ClientHello`, {
        part,
        staticDecrypted: part === 'payload',
      });
    }
    this.mixHash(ciphertext);
    return plaintext;
  }

  private key(): Buffer {
    // The handshake never encrypts before its first DH; a call here without a key is a bug.
    if (this.k === null) throw new Error('Noise cipher used before MixKey');
    return this.k;
  }

  private nextNonce(): number {
    if (this.n > MAX_NONCE) throw new Error('Noise nonce exhausted');
    return this.n++;
  }
}

/** State after the connection header (prologue) and the ClientHello's ephemeral are hashed. */
function afterClientHello(header: Uint8Array, clientEphemeral: Uint8Array): WaSymmetricState {
  const state = new WaSymmetricState();
  state.mixHash(header); // prologue: the connection header (whatsmeow nh.Start(pattern, header))
  state.mixHash(clientEphemeral); // -> e
  // WhatsApp's deviation: no MixHash of the empty first payload here.
  return state;
}

export interface OpenedServerHello {
  serverEphemeral: Uint8Array;
  /** The server's static X25519 public key, decrypted: the leaf certificate must carry it. */
  serverStatic: Uint8Array;
  /** The decrypted payload: the serialized CertChain (verify with wacert.ts). */
  certChain: Uint8Array;
  handshakeHash: Uint8Array;
  chainingKey: Uint8Array;
}

export interface ClientHandshakeOptions {
  /** The 4-byte connection header (waframe.connectionHeader), from the catalogue. */
  header: Uint8Array;
  /** A fresh key pair is generated unless given (tests pass fixed keys). */
  ephemeral?: X25519KeyPair;
}

/** The client side: builds the first bytes to send and reads the ServerHello that answers them. */
export class WaNoiseClient {
  readonly header: Uint8Array;
  readonly ephemeral: X25519KeyPair;
  /** The HandshakeMessage{clientHello{ephemeral}} protobuf, unframed. */
  readonly clientHello: Uint8Array;
  /** What goes on the wire first: the connection header, then the framed ClientHello (43 bytes). */
  readonly firstBytes: Uint8Array;
  private readonly state: WaSymmetricState;

  constructor(options: ClientHandshakeOptions) {
    this.header = Uint8Array.from(options.header);
    this.ephemeral = options.ephemeral ?? generateX25519KeyPair();
    this.clientHello = encodeHandshakeMessage({ clientHello: { ephemeral: this.ephemeral.publicKey } });
    this.firstBytes = Buffer.concat([this.header, encodeFrame(this.clientHello)]);
    this.state = afterClientHello(this.header, this.ephemeral.publicKey);
  }

  /** h after the ClientHello (a copy). */
  get handshakeHash(): Uint8Array {
    return this.state.handshakeHash;
  }

  /**
   * Reads the server's first frame (payload, without its 3-byte length). Works on a copy of the
   * handshake state, so the client is unchanged by a failure. Throws `proto_malformed` when the
   * frame is not a well-formed ServerHello and `proto_mismatch` when it is one but not sealed for
   * our ephemeral (a replay, or a middlebox that cannot do the server's DH).
   */
  readServerHello(frame: Uint8Array): OpenedServerHello {
    const message = decodeHandshakeMessage(frame);
    const hello = message.serverHello;
    if (hello === undefined) {
      throw malformed('not a ServerHello: HandshakeMessage has no serverHello', {
        fields: Object.keys(message),
      });
    }
    const { ephemeral, static: sealedStatic, payload } = hello;
    if (ephemeral === undefined || sealedStatic === undefined || payload === undefined) {
      throw malformed('ServerHello is missing ephemeral, static or payload', { fields: Object.keys(hello) });
    }
    if (ephemeral.length !== KEY_BYTES) throw malformed(`ServerHello ephemeral is ${ephemeral.length} bytes, expected ${KEY_BYTES}`);
    if (sealedStatic.length !== ENCRYPTED_STATIC_BYTES) {
      throw malformed(`ServerHello static is ${sealedStatic.length} bytes, expected ${ENCRYPTED_STATIC_BYTES}`);
    }
    if (payload.length < GCM_TAG_BYTES) throw malformed(`ServerHello payload is ${payload.length} bytes, shorter than the GCM tag`);

    const state = this.state.clone();
    // <- e, ee
    state.mixHash(ephemeral);
    state.mixKey(x25519(this.ephemeral.privateKey, ephemeral, 'server ephemeral'));
    // <- s (encrypted)
    const serverStatic = state.decryptAndHash(sealedStatic, 'static');
    // es: only the owner of that static key can have sealed the payload under this key.
    let es: Uint8Array;
    try {
      es = x25519(this.ephemeral.privateKey, serverStatic, 'server static');
    } catch (err) {
      // The static did decrypt (it was sealed for us), but to a key no real Noise peer has.
      if (err instanceof ProbeFailure) throw malformed('the server static key decrypted, but is not a usable X25519 key', { ...err.evidence, staticDecrypted: true });
      throw err;
    }
    state.mixKey(es);
    const certChain = state.decryptAndHash(payload, 'payload');
    return {
      serverEphemeral: Uint8Array.from(ephemeral),
      serverStatic,
      certChain,
      handshakeHash: state.handshakeHash,
      chainingKey: state.chainingKey,
    };
  }
}

export interface ServerHelloOptions {
  /** The connection header the client sent (the prologue). */
  header: Uint8Array;
  /** The client's first frame payload: HandshakeMessage{clientHello}. */
  clientHello: Uint8Array;
  /** The server's long-term static key pair; the leaf certificate carries its public key. */
  static: X25519KeyPair;
  /** The plaintext payload: a serialized CertChain. */
  payload: Uint8Array;
  /** A fresh key pair is generated unless given. */
  ephemeral?: X25519KeyPair;
}

export interface AnsweredClientHello {
  clientEphemeral: Uint8Array;
  /** HandshakeMessage{serverHello}, unframed. */
  serverHello: Uint8Array;
  /** The same, framed: the bytes to send. */
  frame: Uint8Array;
  handshakeHash: Uint8Array;
  chainingKey: Uint8Array;
}

/**
 * The server side of the first round trip (for the lab): reads a ClientHello and seals the static
 * key and certificate chain for that client's ephemeral, mirroring readServerHello step by step.
 */
export function answerClientHello(options: ServerHelloOptions): AnsweredClientHello {
  const hello = decodeHandshakeMessage(options.clientHello).clientHello;
  const clientEphemeral = hello?.ephemeral;
  if (clientEphemeral === undefined) throw malformed('not a ClientHello with an ephemeral key');
  if (clientEphemeral.length !== KEY_BYTES) {
    throw malformed(`ClientHello ephemeral is ${clientEphemeral.length} bytes, expected ${KEY_BYTES}`);
  }
  const ephemeral = options.ephemeral ?? generateX25519KeyPair();
  const state = afterClientHello(options.header, clientEphemeral);
  state.mixHash(ephemeral.publicKey);
  state.mixKey(x25519(ephemeral.privateKey, clientEphemeral, 'client ephemeral'));
  const sealedStatic = state.encryptAndHash(options.static.publicKey);
  state.mixKey(x25519(options.static.privateKey, clientEphemeral, 'client ephemeral'));
  const sealedPayload = state.encryptAndHash(options.payload);
  const serverHello = encodeHandshakeMessage({
    serverHello: { ephemeral: ephemeral.publicKey, static: sealedStatic, payload: sealedPayload },
  });
  return {
    clientEphemeral: Uint8Array.from(clientEphemeral),
    serverHello,
    frame: encodeFrame(serverHello),
    handshakeHash: state.handshakeHash,
    chainingKey: state.chainingKey,
  };
}
