/**
 * TURN (RFC 8656) on top of the STUN codec: its methods, ChannelData framing, splitting a
 * TCP/TLS byte stream into STUN messages and ChannelData, the long-term credential keys of
 * RFC 8489 §9.2, and the mapping from TURN error codes to the failure taxonomy. Pure.
 */
import { createHash } from 'node:crypto';
import type { FailureCode } from '../failure.js';
import { malformed } from './errors.js';
import { PASSWORD_ALGORITHM } from './stun-attributes.js';
import { HEADER_LENGTH, METHOD_BINDING } from './stun.js';
import { hexPrefix } from '../evidence.js';

/** RFC 8656 §17 (STUN Methods registry). */
export const METHOD = {
  BINDING: METHOD_BINDING, // RFC 8489 §18.2
  ALLOCATE: 0x003, // RFC 8656 §17: request/response only
  REFRESH: 0x004, // RFC 8656 §17: request/response only
  SEND: 0x006, // RFC 8656 §17: indication only
  DATA: 0x007, // RFC 8656 §17: indication only
  CREATE_PERMISSION: 0x008, // RFC 8656 §17: request/response only
  CHANNEL_BIND: 0x009, // RFC 8656 §17: request/response only
} as const;

const METHOD_NAMES: ReadonlyMap<number, string> = new Map([
  [METHOD.BINDING, 'Binding'],
  [METHOD.ALLOCATE, 'Allocate'],
  [METHOD.REFRESH, 'Refresh'],
  [METHOD.SEND, 'Send'],
  [METHOD.DATA, 'Data'],
  [METHOD.CREATE_PERMISSION, 'CreatePermission'],
  [METHOD.CHANNEL_BIND, 'ChannelBind'],
]);

/** The RFC's name of a method, for evidence ("Allocate", or "0x00a"). */
export function methodName(method: number): string {
  return METHOD_NAMES.get(method) ?? `0x${method.toString(16).padStart(3, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// ChannelData (RFC 8656 §12.4-12.6)

/** RFC 8656 §12: channel numbers a client may bind; 0x5000-0xFFFF are reserved or not channels. */
export const CHANNEL_MIN = 0x4000;
export const CHANNEL_MAX = 0x4fff;
/** RFC 8656 §12.4: 2-byte channel number, 2-byte length. */
const CHANNEL_HEADER_LENGTH = 4;

export interface ChannelData {
  readonly channel: number;
  /** A view into the received buffer, without padding. */
  readonly data: Buffer;
}

export function isValidChannel(channel: number): boolean {
  return Number.isInteger(channel) && channel >= CHANNEL_MIN && channel <= CHANNEL_MAX;
}

/**
 * RFC 8656 §12.5: over TCP and TLS the message MUST be padded to a multiple of 4 bytes (the
 * length field excludes the padding); over UDP padding is optional and we send none.
 */
export function encodeChannelData(channel: number, data: Uint8Array, opts: { stream?: boolean } = {}): Buffer {
  if (!isValidChannel(channel)) throw new RangeError(`channel number outside 0x4000-0x4FFF: ${channel}`);
  if (data.length > 0xffff) throw new RangeError(`ChannelData payload too long: ${data.length}`);
  const size = CHANNEL_HEADER_LENGTH + (opts.stream ? (data.length + 3) & ~3 : data.length);
  const out = Buffer.alloc(size);
  out.writeUInt16BE(channel, 0);
  out.writeUInt16BE(data.length, 2);
  out.set(data, CHANNEL_HEADER_LENGTH);
  return out;
}

/**
 * Decode one ChannelData message that fills `input`: a UDP datagram (padding allowed, not
 * required) or a frame cut from a stream with `streamFrameLength` (padding required).
 */
export function decodeChannelData(input: Uint8Array, opts: { stream?: boolean } = {}): ChannelData {
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const evidence = { bytesReceived: buf.length, firstBytesHex: hexPrefix(buf) };
  if (buf.length < CHANNEL_HEADER_LENGTH) throw malformed(`ChannelData shorter than its header: ${buf.length} bytes`, evidence);
  const channel = buf.readUInt16BE(0);
  if (!isValidChannel(channel)) throw malformed(`ChannelData channel 0x${channel.toString(16)} outside 0x4000-0x4FFF (RFC 8656 §12)`, evidence);
  const length = buf.readUInt16BE(2);
  const available = buf.length - CHANNEL_HEADER_LENGTH;
  if (length > available) throw malformed(`ChannelData length says ${length} bytes, ${available} present`, evidence);
  const padded = (length + 3) & ~3;
  if (opts.stream ? available !== padded : available > padded) {
    throw malformed(`ChannelData of ${length} bytes arrived in ${available} bytes (RFC 8656 §12.5 padding)`, evidence);
  }
  return { channel, data: buf.subarray(CHANNEL_HEADER_LENGTH, CHANNEL_HEADER_LENGTH + length) };
}

/** RFC 7983 §7 (updated by RFC 9443): a first byte of 64-79 is TURN ChannelData. */
export function isChannelData(buf: Uint8Array): boolean {
  return buf.length >= CHANNEL_HEADER_LENGTH && (buf[0] as number) >= 0x40 && (buf[0] as number) <= 0x4f;
}

export interface StreamFrame {
  readonly kind: 'stun' | 'channel-data';
  /** Bytes the whole frame occupies in the stream, padding included. */
  readonly length: number;
}

/**
 * Over TCP/TLS a TURN client reads STUN messages and ChannelData from one byte stream (RFC
 * 8656 §12.5, RFC 8489 §6.2.2): the first byte tells which (RFC 7983 §7: 0-3 STUN, 64-79
 * ChannelData) and the length field where it ends. Undefined until 4 bytes are there. Any other
 * first byte is malformed: e.g. a TLS record (0x16) where TURN was expected.
 */
export function streamFrameLength(buf: Uint8Array): StreamFrame | undefined {
  if (buf.length < 4) return undefined;
  const first = buf[0] as number;
  const length = ((buf[2] as number) << 8) | (buf[3] as number);
  if (first <= 3) return { kind: 'stun', length: HEADER_LENGTH + length };
  if (first >= 0x40 && first <= 0x4f) return { kind: 'channel-data', length: CHANNEL_HEADER_LENGTH + ((length + 3) & ~3) };
  throw malformed(`neither STUN nor ChannelData: first byte 0x${first.toString(16)}`, { firstBytesHex: hexPrefix(buf) });
}

// ---------------------------------------------------------------------------------------------
// Credentials (RFC 8489 §9.1-9.2)

export type Credential = string | Uint8Array;
const bytesOf = (v: Credential): Buffer => (typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v));
const COLON = Buffer.from(':');

/** RFC 8489 §9.1.1: the short-term key is the (OpaqueString-processed) password itself. */
export function shortTermKey(password: Credential): Buffer {
  return bytesOf(password);
}

/**
 * RFC 8489 §9.2.2: key = H(username ":" realm ":" password), H = MD5 (16 bytes) by default or
 * SHA-256 (32 bytes) when PASSWORD-ALGORITHM says so (§18.5: 0x0001 MD5, 0x0002 SHA-256).
 * Strings are used as UTF-8 as given: apply `saslprep` first where non-ASCII credentials need
 * the RFC's preparation. REALM may be passed as the bytes the server sent.
 */
export function longTermKey(username: Credential, realm: Credential, password: Credential, algorithm: number = PASSWORD_ALGORITHM.MD5): Buffer {
  const hash = algorithm === PASSWORD_ALGORITHM.MD5 ? 'md5' : algorithm === PASSWORD_ALGORITHM.SHA256 ? 'sha256' : undefined;
  if (!hash) throw new RangeError(`unsupported password algorithm 0x${algorithm.toString(16)} (RFC 8489 §18.5)`);
  return createHash(hash).update(bytesOf(username)).update(COLON).update(bytesOf(realm)).update(COLON).update(bytesOf(password)).digest();
}

/** RFC 8489 §14.4: USERHASH = SHA-256(username ":" realm), sent instead of USERNAME for anonymity. */
export function userhashOf(username: Credential, realm: Credential): Buffer {
  return createHash('sha256').update(bytesOf(username)).update(COLON).update(bytesOf(realm)).digest();
}

/**
 * The mapping half of SASLprep (RFC 4013 §2.1-2.2), which RFC 5769 §2.4 and RFC 8489
 * Appendix B.1 apply to their password "The<U+00AD>M<U+00AA>tr<U+2168>" to get "TheMatrIX":
 * non-ASCII spaces (RFC 3454 table C.1.2) become U+0020, "commonly mapped to nothing"
 * characters (table B.1) are removed, then NFKC. The prohibited-output and bidi checks are not
 * applied: a probe only has to derive the same key the server derives from the same secret.
 */
export function saslprep(text: string): string {
  return text.replace(MAPPED_TO_NOTHING, '').replace(NON_ASCII_SPACE, ' ').normalize('NFKC');
}
/** RFC 3454 table B.1. */
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/gu;
/** RFC 3454 table C.1.2, less U+200B, which B.1 lists too and which is removed first. */
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]/gu;

// ---------------------------------------------------------------------------------------------
// Error responses -> failure taxonomy (docs/architecture.md#failure-taxonomy)

/**
 * The failure code for a TURN error response. 401 is the normal first challenge (RFC 8656
 * §7.2), so it is a failure only `afterAuthentication` (credentials were sent and rejected),
 * as is 441 Wrong Credentials. Anything not in the taxonomy is `proto_error` (code in evidence).
 */
export function turnErrorFailure(code: number, afterAuthentication: boolean): FailureCode {
  switch (code) {
    case 401: // RFC 8489 §14.8 Unauthenticated
      return afterAuthentication ? 'turn_unauthorized' : 'proto_error';
    case 441: // RFC 8656 §19 Wrong Credentials: only ever an answer to credentials we sent
      return 'turn_unauthorized';
    case 403: // RFC 8656 §19 Forbidden
      return 'turn_forbidden';
    case 486: // RFC 8656 §19 Allocation Quota Reached
      return 'turn_quota';
    case 508: // RFC 8656 §19 Insufficient Capacity
      return 'turn_insufficient_capacity';
    default:
      return 'proto_error';
  }
}
