/**
 * STUN messages (RFC 8489): the 20-byte header, attribute TLVs with 4-byte padding, and the two
 * attributes whose value depends on their position in the message, MESSAGE-INTEGRITY(-SHA256)
 * and FINGERPRINT. Pure: bytes in, values out. Typed attribute values live in stun-attributes.ts,
 * TURN's methods and ChannelData framing in turn.ts.
 *
 * Hostile input raises only `ProbeFailure('proto_malformed')`; every length is checked against
 * the bytes actually present before it is used, and nothing is allocated from a declared length
 * (values are views into the received buffer).
 *
 * The classic RFC 3489 form (no magic cookie, a 128-bit transaction id) parses too, so a phase
 * can talk to an old server such as node-stun: `magicCookie` is then false and
 * `transactionId` has 16 bytes.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { hexPrefix } from '../evidence.js';
import { malformed } from './errors.js';
import { ATTR } from './stun-attributes.js';

/** RFC 8489 §5: fixed in every RFC 5389/8489 message; absent from RFC 3489 ones. */
export const MAGIC_COOKIE = 0x2112a442;
/** RFC 8489 §5: 20-byte header. */
export const HEADER_LENGTH = 20;
/** RFC 8489 §5: 96-bit transaction id after the cookie. */
export const TRANSACTION_ID_LENGTH = 12;
/** RFC 3489 §11.1: the classic header has a 128-bit transaction id where the cookie now is. */
export const CLASSIC_TRANSACTION_ID_LENGTH = 16;
/** RFC 8489 §14.7: CRC-32 of the message XOR'ed with this ("STUN" in ASCII). */
export const FINGERPRINT_XOR = 0x5354554e;
/** RFC 8489 §14.5: HMAC-SHA1 output. */
const HMAC_SHA1_LENGTH = 20;
/** RFC 8489 §14.6: HMAC-SHA256 may be truncated to no fewer than 16 bytes, in 4-byte steps. */
const HMAC_SHA256_MIN = 16;
const HMAC_SHA256_MAX = 32;
/** RFC 8489 §5: the length field is 16 bits and counts only whole 4-byte attribute words. */
const MAX_BODY_LENGTH = 0xfffc;

/** RFC 8489 §18.2 (STUN Methods registry). TURN's methods are in turn.ts. */
export const METHOD_BINDING = 0x001;

/** RFC 8489 §5: the two class bits C1 C0. */
export type StunClass = 'request' | 'indication' | 'success' | 'error';
const CLASS_BITS: Readonly<Record<StunClass, number>> = { request: 0b00, indication: 0b01, success: 0b10, error: 0b11 };
const CLASS_NAMES: readonly StunClass[] = ['request', 'indication', 'success', 'error'];

/** One attribute as received: `value` is a view into `StunMessage.raw`, without padding. */
export interface RawAttr {
  readonly type: number;
  readonly value: Buffer;
  /** Offset of the attribute's 4-byte header within the message: integrity checks need it. */
  readonly offset: number;
}

export interface StunMessage {
  readonly method: number;
  readonly class: StunClass;
  /** 12 bytes; 16 for an RFC 3489 message (no magic cookie). */
  readonly transactionId: Buffer;
  readonly magicCookie: boolean;
  /**
   * The attributes a receiver acts on, in order. Attributes after MESSAGE-INTEGRITY other than
   * MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are not here but in `ignored` (RFC 8489 §14.5:
   * agents MUST ignore them, so a forger cannot append unauthenticated ones).
   */
  readonly attributes: readonly RawAttr[];
  readonly ignored: readonly RawAttr[];
  /** The exact bytes of the message (header + body). */
  readonly raw: Buffer;
}

/** What an attribute XORs its address with: header bytes 4..20 (cookie + transaction id). */
export interface EncodeContext {
  readonly xorKey: Buffer;
}

/**
 * An attribute to send. Most values are fixed bytes; XOR'ed addresses need the header, so
 * their value is computed once the transaction id is known (pion's `AddTo(msg)` idea).
 */
export interface StunAttribute {
  readonly type: number;
  readonly value: Uint8Array | ((ctx: EncodeContext) => Uint8Array);
}

export interface BuildOptions {
  readonly method: number;
  readonly class: StunClass;
  /** 12 bytes (RFC 8489), or 16 for a classic RFC 3489 request (no cookie is written). */
  readonly transactionId: Uint8Array;
  readonly attributes?: readonly StunAttribute[];
  /** Key for MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5): see turn.ts for long-term keys. */
  readonly integrity?: Uint8Array;
  /** Key for MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6), written after MESSAGE-INTEGRITY. */
  readonly integritySha256?: Uint8Array;
  /** Append FINGERPRINT (RFC 8489 §14.7), always last. */
  readonly fingerprint?: boolean;
  /**
   * Byte used to pad attribute values to 4 bytes. RFC 8489 §14 lets padding be any value and
   * receivers ignore it; we send 0. RFC 5769's vectors 2.1-2.3 pad with 0x20 (spaces), and
   * since padding is covered by MESSAGE-INTEGRITY and FINGERPRINT, reproducing them byte for
   * byte needs this knob. Nothing else should set it.
   */
  readonly paddingByte?: number;
}

/** RFC 8489 §5, figure 3: the 14-bit type interleaves 12 method bits with the 2 class bits. */
export function encodeMessageType(method: number, cls: StunClass): number {
  if (!Number.isInteger(method) || method < 0 || method > 0xfff) throw new RangeError(`STUN method out of range: ${method}`);
  const c = CLASS_BITS[cls];
  return (method & 0x00f) | ((method & 0x070) << 1) | ((method & 0xf80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7);
}

export function decodeMessageType(type: number): { method: number; class: StunClass } {
  const method = (type & 0x000f) | ((type & 0x00e0) >> 1) | ((type & 0x3e00) >> 2);
  const c = ((type & 0x0010) >> 4) | ((type & 0x0100) >> 7);
  return { method, class: CLASS_NAMES[c] as StunClass };
}

/** A fresh random transaction id (RFC 8489 §6: uniformly random). `classic` gives RFC 3489's 16 bytes. */
export function newTransactionId(classic = false): Buffer {
  if (!classic) return randomBytes(TRANSACTION_ID_LENGTH);
  // A classic id must not begin with the cookie, or the answer would parse as RFC 8489.
  for (;;) {
    const id = randomBytes(CLASSIC_TRANSACTION_ID_LENGTH);
    if (id.readUInt32BE(0) !== MAGIC_COOKIE) return id;
  }
}

const pad4 = (n: number): number => (n + 3) & ~3;

/**
 * Serialise a message. MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are added
 * here, in the RFC's order, because each covers the bytes before it with the length field
 * adjusted to end just after itself (RFC 8489 §14.5-14.7).
 */
export function buildMessage(opts: BuildOptions): Buffer {
  const id = opts.transactionId;
  const classic = id.length === CLASSIC_TRANSACTION_ID_LENGTH;
  if (id.length !== TRANSACTION_ID_LENGTH && !classic) {
    throw new RangeError(`transaction id must be 12 (RFC 8489) or 16 (RFC 3489) bytes, got ${id.length}`);
  }
  const xorKey = Buffer.alloc(16);
  if (classic) xorKey.set(id, 0);
  else {
    xorKey.writeUInt32BE(MAGIC_COOKIE, 0);
    xorKey.set(id, 4);
  }
  const ctx: EncodeContext = { xorKey };
  const values = (opts.attributes ?? []).map((a) => {
    if (!Number.isInteger(a.type) || a.type < 0 || a.type > 0xffff) throw new RangeError(`attribute type out of range: ${a.type}`);
    const v = typeof a.value === 'function' ? a.value(ctx) : a.value;
    if (v.length > 0xffff) throw new RangeError(`attribute 0x${a.type.toString(16)} value too long: ${v.length}`);
    return { type: a.type, value: v };
  });
  let bodyLength = 0;
  for (const { value } of values) bodyLength += 4 + pad4(value.length);
  if (opts.integrity) bodyLength += 4 + HMAC_SHA1_LENGTH;
  if (opts.integritySha256) bodyLength += 4 + HMAC_SHA256_MAX;
  if (opts.fingerprint) bodyLength += 8;
  if (bodyLength > MAX_BODY_LENGTH) throw new RangeError(`STUN message too long: ${bodyLength} bytes of attributes`);

  const padding = opts.paddingByte ?? 0;
  const buf = Buffer.alloc(HEADER_LENGTH + bodyLength, 0);
  buf.writeUInt16BE(encodeMessageType(opts.method, opts.class), 0);
  buf.set(xorKey, 4);
  let offset = HEADER_LENGTH;
  for (const { type, value } of values) {
    buf.writeUInt16BE(type, offset);
    buf.writeUInt16BE(value.length, offset + 2);
    buf.set(value, offset + 4);
    buf.fill(padding, offset + 4 + value.length, offset + 4 + pad4(value.length));
    offset += 4 + pad4(value.length);
  }
  const appendMac = (type: number, algorithm: 'sha1' | 'sha256', key: Uint8Array, size: number): void => {
    buf.writeUInt16BE(offset + 4 + size - HEADER_LENGTH, 2);
    const mac = createHmac(algorithm, key).update(buf.subarray(0, offset)).digest();
    buf.writeUInt16BE(type, offset);
    buf.writeUInt16BE(size, offset + 2);
    mac.copy(buf, offset + 4, 0, size);
    offset += 4 + size;
  };
  if (opts.integrity) appendMac(ATTR.MESSAGE_INTEGRITY, 'sha1', opts.integrity, HMAC_SHA1_LENGTH);
  if (opts.integritySha256) appendMac(ATTR.MESSAGE_INTEGRITY_SHA256, 'sha256', opts.integritySha256, HMAC_SHA256_MAX);
  if (opts.fingerprint) {
    buf.writeUInt16BE(offset + 8 - HEADER_LENGTH, 2);
    const crc = (crc32(buf.subarray(0, offset)) ^ FINGERPRINT_XOR) >>> 0;
    buf.writeUInt16BE(ATTR.FINGERPRINT, offset);
    buf.writeUInt16BE(4, offset + 2);
    buf.writeUInt32BE(crc, offset + 4);
    offset += 8;
  }
  buf.writeUInt16BE(bodyLength, 2);
  return buf;
}

/**
 * RFC 7983 §7 (updated by RFC 9443): on a port shared with other protocols, a first byte of
 * 0-3 means STUN; the cookie and a length that matches the datagram make it certain. With
 * `classic`, RFC 3489 messages (no cookie) count too: the phase that expects them says so.
 */
export function isStunMessage(buf: Uint8Array, opts: { classic?: boolean } = {}): boolean {
  if (buf.length < HEADER_LENGTH || (buf[0] as number) > 3) return false;
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const length = view.readUInt16BE(2);
  if (HEADER_LENGTH + length !== buf.length) return false;
  if (view.readUInt32BE(4) === MAGIC_COOKIE) return length % 4 === 0;
  return opts.classic === true;
}

/**
 * Total size of the STUN message at the start of `buf` from its header, or undefined when
 * fewer than 4 bytes are there yet: for reading STUN over a TCP or TLS byte stream.
 */
export function stunMessageLength(buf: Uint8Array): number | undefined {
  if (buf.length < 4) return undefined;
  if (((buf[0] as number) & 0xc0) !== 0) throw malformed('not a STUN message: first two bits are not 0', { firstBytesHex: hexPrefix(buf) });
  return HEADER_LENGTH + (((buf[2] as number) << 8) | (buf[3] as number));
}

/**
 * Parse one STUN message that fills `input` exactly (a UDP datagram, or one frame cut from a
 * stream with `stunMessageLength`). Structure only: attribute values are decoded by the
 * getters in stun-attributes.ts, integrity by `verifyIntegrity`, the fingerprint by
 * `verifyFingerprint`.
 */
export function parseMessage(input: Uint8Array): StunMessage {
  const raw = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const evidence = (): Record<string, unknown> => ({ bytesReceived: raw.length, firstBytesHex: hexPrefix(raw) });
  if (raw.length < HEADER_LENGTH) throw malformed(`STUN message shorter than its header: ${raw.length} bytes`, evidence());
  const type = raw.readUInt16BE(0);
  if ((type & 0xc000) !== 0) throw malformed('not a STUN message: first two bits are not 0 (RFC 8489 §5)', evidence());
  const length = raw.readUInt16BE(2);
  if (HEADER_LENGTH + length !== raw.length) {
    throw malformed(`STUN length field says ${length} bytes of attributes, ${raw.length - HEADER_LENGTH} present`, evidence());
  }
  const magicCookie = raw.readUInt32BE(4) === MAGIC_COOKIE;
  // RFC 8489 §5: every attribute is padded, so the length is a multiple of 4. RFC 3489 had no
  // general padding rule, so classic messages are read leniently.
  if (magicCookie && length % 4 !== 0) throw malformed(`STUN length ${length} is not a multiple of 4`, evidence());
  const { method, class: cls } = decodeMessageType(type);

  const attributes: RawAttr[] = [];
  const ignored: RawAttr[] = [];
  let afterIntegrity = false;
  let seenFingerprint = false;
  let offset = HEADER_LENGTH;
  while (offset < raw.length) {
    if (seenFingerprint) throw malformed('attribute after FINGERPRINT, which must be last (RFC 8489 §14.7)', evidence());
    if (raw.length - offset < 4) throw malformed(`truncated attribute header at offset ${offset}`, evidence());
    const attrType = raw.readUInt16BE(offset);
    const attrLength = raw.readUInt16BE(offset + 2);
    const start = offset + 4;
    if (attrLength > raw.length - start) {
      throw malformed(`attribute 0x${hex4(attrType)} declares ${attrLength} bytes, ${raw.length - start} left`, evidence());
    }
    const padded = pad4(attrLength);
    if (padded > raw.length - start && magicCookie) {
      throw malformed(`attribute 0x${hex4(attrType)} is missing its padding`, evidence());
    }
    const attr: RawAttr = { type: attrType, value: raw.subarray(start, start + attrLength), offset };
    checkPositional(attr, evidence);
    if (attrType === ATTR.FINGERPRINT) {
      seenFingerprint = true;
      attributes.push(attr);
    } else if (afterIntegrity && attrType !== ATTR.MESSAGE_INTEGRITY_SHA256) {
      ignored.push(attr);
    } else {
      attributes.push(attr);
    }
    if (attrType === ATTR.MESSAGE_INTEGRITY || attrType === ATTR.MESSAGE_INTEGRITY_SHA256) afterIntegrity = true;
    offset = Math.min(start + padded, raw.length);
  }
  const transactionId = magicCookie ? raw.subarray(8, HEADER_LENGTH) : raw.subarray(4, HEADER_LENGTH);
  return { method, class: cls, transactionId, magicCookie, attributes, ignored, raw };
}

/** The sizes of the positional attributes are fixed by the RFC; anything else cannot be checked. */
function checkPositional(attr: RawAttr, evidence: () => Record<string, unknown>): void {
  const n = attr.value.length;
  if (attr.type === ATTR.MESSAGE_INTEGRITY && n !== HMAC_SHA1_LENGTH) {
    throw malformed(`MESSAGE-INTEGRITY is ${n} bytes, not 20 (RFC 8489 §14.5)`, evidence());
  }
  if (attr.type === ATTR.MESSAGE_INTEGRITY_SHA256 && (n < HMAC_SHA256_MIN || n > HMAC_SHA256_MAX || n % 4 !== 0)) {
    throw malformed(`MESSAGE-INTEGRITY-SHA256 is ${n} bytes (RFC 8489 §14.6: 16-32, a multiple of 4)`, evidence());
  }
  if (attr.type === ATTR.FINGERPRINT && n !== 4) throw malformed(`FINGERPRINT is ${n} bytes, not 4 (RFC 8489 §14.7)`, evidence());
}

/** The first attribute of a type (RFC 8489 §14: only the first occurrence need be processed). */
export function findAttribute(msg: StunMessage, type: number): RawAttr | undefined {
  return msg.attributes.find((a) => a.type === type);
}

/**
 * Check MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 with `key` (short-term: the password;
 * long-term: `longTermKey` in turn.ts). True only when at least one is present and every one
 * present matches. `raw` defaults to the bytes the message was parsed from. RFC 3489's own
 * MESSAGE-INTEGRITY (over a prefix zero-padded to 64 bytes, §11.2.8) is not supported: no
 * classic server a probe meets uses it.
 */
export function verifyIntegrity(msg: StunMessage, key: Uint8Array, raw: Uint8Array = msg.raw): boolean {
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const checks: Array<[RawAttr, 'sha1' | 'sha256']> = [];
  const sha1 = findAttribute(msg, ATTR.MESSAGE_INTEGRITY);
  const sha256 = findAttribute(msg, ATTR.MESSAGE_INTEGRITY_SHA256);
  if (sha1) checks.push([sha1, 'sha1']);
  if (sha256) checks.push([sha256, 'sha256']);
  if (checks.length === 0) return false;
  for (const [attr, algorithm] of checks) {
    const end = attr.offset + 4 + attr.value.length;
    if (end > bytes.length || bytes.length < HEADER_LENGTH) return false;
    // The MAC covers the header with its length field set to end just after this attribute.
    const header = Buffer.from(bytes.subarray(0, HEADER_LENGTH));
    header.writeUInt16BE(end - HEADER_LENGTH, 2);
    const mac = createHmac(algorithm, key).update(header).update(bytes.subarray(HEADER_LENGTH, attr.offset)).digest();
    const expected = mac.subarray(0, attr.value.length);
    const received = bytes.subarray(attr.offset + 4, end);
    if (!timingSafeEqual(expected, received)) return false;
  }
  return true;
}

/**
 * Check FINGERPRINT (RFC 8489 §14.7): CRC-32 of everything before it, XOR 0x5354554e. Takes a
 * parsed message or raw bytes (which are parsed, so malformed bytes raise proto_malformed).
 * False when there is no FINGERPRINT.
 */
export function verifyFingerprint(msgOrRaw: StunMessage | Uint8Array): boolean {
  const msg = msgOrRaw instanceof Uint8Array ? parseMessage(msgOrRaw) : msgOrRaw;
  const fp = findAttribute(msg, ATTR.FINGERPRINT);
  if (!fp) return false;
  const crc = (crc32(msg.raw.subarray(0, fp.offset)) ^ FINGERPRINT_XOR) >>> 0;
  return fp.value.readUInt32BE(0) === crc;
}

/**
 * RFC 8489 §14: types 0x0000-0x7FFF are comprehension-required. A client that receives one it
 * does not know in a success response must treat the transaction as failed (§7.3.3).
 */
export function unknownComprehensionRequired(msg: StunMessage, known: ReadonlySet<number>): number[] {
  return msg.attributes.filter((a) => a.type < 0x8000 && !known.has(a.type)).map((a) => a.type);
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
