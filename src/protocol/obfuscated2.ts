/**
 * obfuscated2: MTProto's transport obfuscation (core.telegram.org/mtproto/mtproto-transports,
 * "Transport obfuscation"; tdlib td/mtproto/TcpTransport.cpp, ObfuscatedTransport::init).
 *
 * The client sends a 64-byte header: random bytes, with the transport tag at 56-59 and the DC id
 * (int16 LE) at 60-61. Its bytes 8-40 and 40-56 are the key and IV of the client->server
 * AES-256-CTR stream; the same bytes reversed give the server->client key and IV. The header goes
 * out as its first 56 bytes in clear and its last 8 encrypted with the client->server stream,
 * which then continues over every later byte; each direction is one continuous CTR stream.
 *
 * The random header must not look like another transport to the DC (see `detectClientTransport`):
 * tdlib regenerates it while byte 0 is EF, the first word is HEAD/POST/GET /OPTI/EEEEEEEE/DDDDDDDD
 * or 16 03 01 02, or the second word is zero. gramjs (network/connection/TCPObfuscated.js) and
 * Telethon check fewer words; callprobe follows tdlib.
 *
 * Both sides are here: the client (the probe) and the server (the lab's fake DC), which reads the
 * client's header, decrypts its stream and encrypts answers.
 */
import { createCipheriv, createDecipheriv, type Cipher, type Decipher } from 'node:crypto';
import { malformed } from './errors.js';
import { HTTP_FIRST_WORDS, TLS_FIRST_WORD, secureRandom, type MtprotoTransport, type RandomSource } from './mtproto-transport.js';

/** Transports that obfuscated2 can carry; the full transport cannot (mtproto-transports, "Transport obfuscation"). */
export type ObfuscatedTransport = Exclude<MtprotoTransport, 'full'>;

export const OBFUSCATED2_HEADER_LENGTH = 64;

/** The protocol tag at bytes 56-59 of the header, as a little-endian word (mtproto-transports, "Transport obfuscation"). */
export const OBFUSCATED2_TAG: Readonly<Record<ObfuscatedTransport, number>> = {
  abridged: 0xefefefef,
  intermediate: 0xeeeeeeee,
  padded_intermediate: 0xdddddddd,
};

/** Header layout (tdlib TcpTransport.cpp ObfuscatedTransport::init). */
const KEY_OFFSET = 8;
const KEY_LENGTH = 32;
const IV_OFFSET = 40;
const IV_LENGTH = 16;
const TAG_OFFSET = 56;
const DC_ID_OFFSET = 60;
/** Only bytes 56-63 of the header travel encrypted. */
const CLEAR_PREFIX = 56;
/** tdlib gives up after this many forbidden draws (CHECK(try_cnt < 10)): a random source that keeps failing is broken. */
const MAX_HEADER_DRAWS = 10;
/** Abridged transport tag, which must not be the first byte (tdlib TcpTransport.cpp). */
const ABRIDGED_FIRST_BYTE = 0xef;

/** First words a header must not start with (tdlib TcpTransport.cpp ObfuscatedTransport::init). */
const FORBIDDEN_FIRST_WORDS: ReadonlySet<number> = new Set([...HTTP_FIRST_WORDS, 0xdddddddd, 0xeeeeeeee, TLS_FIRST_WORD]);

/** True when a DC would read these 64 bytes as some other transport: tdlib draws again. */
export function isForbiddenHeader(header: Uint8Array): boolean {
  const b = Buffer.from(header.buffer, header.byteOffset, header.byteLength);
  if (b.length < 8) throw new RangeError('an obfuscated2 header has 64 bytes');
  if (b[0] === ABRIDGED_FIRST_BYTE) return true;
  if (FORBIDDEN_FIRST_WORDS.has(b.readUInt32LE(0))) return true;
  return b.readUInt32LE(4) === 0;
}

/**
 * The plaintext 64-byte header: random bytes drawn until allowed, then the tag and, when not 0,
 * the DC id (tdlib writes it only when non-zero; negative ids are media DCs, +10000 test DCs).
 */
export function generateObfuscated2Header(transport: ObfuscatedTransport, dcId: number, random: RandomSource = secureRandom): Uint8Array {
  if (!Number.isInteger(dcId) || dcId < -32768 || dcId > 32767) throw new RangeError(`dc id must be an int16: ${dcId}`);
  for (let draw = 0; draw < MAX_HEADER_DRAWS; draw++) {
    const candidate = random(OBFUSCATED2_HEADER_LENGTH);
    if (candidate.length !== OBFUSCATED2_HEADER_LENGTH) throw new RangeError('random source returned the wrong length');
    if (isForbiddenHeader(candidate)) continue;
    const header = Buffer.from(candidate);
    header.writeUInt32LE(OBFUSCATED2_TAG[transport], TAG_OFFSET);
    if (dcId !== 0) header.writeInt16LE(dcId, DC_ID_OFFSET);
    return header;
  }
  throw new Error(`random source produced ${MAX_HEADER_DRAWS} forbidden obfuscated2 headers in a row`);
}

/** One side of an obfuscated2 connection: two continuous AES-256-CTR streams. */
export interface Obfuscated2Streams {
  /** Encrypts bytes we send; the stream continues across calls. */
  encrypt(data: Uint8Array): Uint8Array;
  /** Decrypts bytes we receive; the stream continues across calls. */
  decrypt(data: Uint8Array): Uint8Array;
}

export interface Obfuscated2Client extends Obfuscated2Streams {
  /** The 64 bytes to send first (56 in clear, 8 encrypted); `encrypt` continues after them. */
  readonly header: Uint8Array;
  readonly transport: ObfuscatedTransport;
  readonly dcId: number;
}

export interface Obfuscated2Server extends Obfuscated2Streams {
  readonly transport: ObfuscatedTransport;
  /** int16 LE at 60-61 of the decrypted header: the DC the client asked for. */
  readonly dcId: number;
}

function keyAndIv(source: Uint8Array): { key: Uint8Array; iv: Uint8Array } {
  return {
    key: source.subarray(KEY_OFFSET, KEY_OFFSET + KEY_LENGTH),
    iv: source.subarray(IV_OFFSET, IV_OFFSET + IV_LENGTH),
  };
}

function reversed(header: Uint8Array): Uint8Array {
  return Uint8Array.from(header).reverse();
}

function ctr(kind: 'encrypt' | 'decrypt', header: Uint8Array): Cipher | Decipher {
  const { key, iv } = keyAndIv(header);
  return kind === 'encrypt' ? createCipheriv('aes-256-ctr', key, iv) : createDecipheriv('aes-256-ctr', key, iv);
}

function streams(encryptor: Cipher | Decipher, decryptor: Cipher | Decipher): Obfuscated2Streams {
  return {
    encrypt: (data) => encryptor.update(data),
    decrypt: (data) => decryptor.update(data),
  };
}

/** Client side from a plaintext header (see `generateObfuscated2Header`): deterministic, for tests and cross-checks. */
export function obfuscated2ClientFromHeader(plainHeader: Uint8Array): Obfuscated2Client {
  if (plainHeader.length !== OBFUSCATED2_HEADER_LENGTH) throw new RangeError('an obfuscated2 header has 64 bytes');
  const transport = tagToTransport(Buffer.from(plainHeader).readUInt32LE(TAG_OFFSET));
  if (transport === null) throw new RangeError('header carries no obfuscated2 transport tag');
  const encryptor = ctr('encrypt', plainHeader);
  const decryptor = ctr('decrypt', reversed(plainHeader));
  const encryptedHeader = encryptor.update(plainHeader);
  const header = Buffer.concat([plainHeader.subarray(0, CLEAR_PREFIX), encryptedHeader.subarray(CLEAR_PREFIX)]);
  return {
    header,
    transport,
    dcId: Buffer.from(plainHeader).readInt16LE(DC_ID_OFFSET),
    ...streams(encryptor, decryptor),
  };
}

/** Client side: a fresh header for `transport` and `dcId`, and the streams that go with it. */
export function createObfuscated2Client(transport: ObfuscatedTransport, dcId: number, random: RandomSource = secureRandom): Obfuscated2Client {
  return obfuscated2ClientFromHeader(generateObfuscated2Header(transport, dcId, random));
}

/**
 * Server side: reads the 64 bytes a client sent first. The server decrypts with the client's
 * encrypt key (header bytes 8-56, sent in clear) to find the tag and DC id, keeps that stream for
 * the client's later bytes, and encrypts its answers with the key from the reversed header.
 * A header whose decrypted tag is none of the three is `proto_malformed`.
 */
export function acceptObfuscated2Client(wireHeader: Uint8Array): Obfuscated2Server {
  if (wireHeader.length !== OBFUSCATED2_HEADER_LENGTH) {
    throw malformed(`obfuscated2: header needs ${OBFUSCATED2_HEADER_LENGTH} bytes, got ${wireHeader.length}`, {
      headerLength: wireHeader.length,
    });
  }
  const decryptor = ctr('decrypt', wireHeader);
  const encryptor = ctr('encrypt', reversed(wireHeader));
  const plain = Buffer.from(decryptor.update(wireHeader));
  const tag = plain.readUInt32LE(TAG_OFFSET);
  const transport = tagToTransport(tag);
  if (transport === null) {
    throw malformed('obfuscated2: decrypted header carries no known transport tag', {
      obfuscatedTagHex: plain.subarray(TAG_OFFSET, TAG_OFFSET + 4).toString('hex'),
    });
  }
  return { transport, dcId: plain.readInt16LE(DC_ID_OFFSET), ...streams(encryptor, decryptor) };
}

function tagToTransport(tag: number): ObfuscatedTransport | null {
  for (const [transport, value] of Object.entries(OBFUSCATED2_TAG) as [ObfuscatedTransport, number][]) {
    if (value === tag) return transport;
  }
  return null;
}
