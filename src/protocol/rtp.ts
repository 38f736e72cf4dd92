/**
 * RTP packets (RFC 3550 §5.1): the 12-byte fixed header, the CSRC list, the header extension
 * (§5.3.1) and padding. Pure: bytes in, values out. The media phase builds its call-like
 * shapes with `encodeRtp`; `decodeRtp` lets tests and the reflector look at what was sent.
 *
 * Hostile input raises only `ProbeFailure('proto_malformed')`: every length is checked against
 * the bytes present before use, and values are views into the input (nothing is allocated from
 * a declared length). Bad arguments to `encodeRtp` are our own bugs and raise RangeError.
 */
import { malformed } from './errors.js';

/** RFC 3550 §5.1: "This document defines version two (2)". */
export const RTP_VERSION = 2;
/** RFC 3550 §5.1: V/P/X/CC, M/PT, sequence number, timestamp, SSRC. */
export const RTP_FIXED_HEADER_LENGTH = 12;
/** RFC 3550 §5.1: CC is 4 bits. */
export const RTP_MAX_CSRC = 15;
/** RFC 3550 §5.3.1: 16-bit profile-defined id, 16-bit length in 32-bit words. */
export const RTP_EXTENSION_HEADER_LENGTH = 4;
/** RFC 3550 §5.3.1: the extension length counts 32-bit words, in 16 bits. */
const MAX_EXTENSION_WORDS = 0xffff;

export interface RtpHeaderExtension {
  /** RFC 3550 §5.3.1 "defined by profile" (0xBEDE for RFC 8285 one-byte elements, 0xDEBE WhatsApp's). */
  readonly profile: number;
  /** The extension body, a multiple of 4 bytes (the length field counts words). */
  readonly data: Uint8Array;
}

export interface RtpHeader {
  readonly marker: boolean;
  /** 7 bits; dynamic types are 96-127 (RFC 3551 §6). */
  readonly payloadType: number;
  /** 16 bits. */
  readonly sequenceNumber: number;
  /** 32 bits, in the payload format's clock. */
  readonly timestamp: number;
  /** 32 bits. */
  readonly ssrc: number;
  readonly csrc?: readonly number[];
  readonly extension?: RtpHeaderExtension | null;
}

export interface RtpPacket {
  readonly version: number;
  readonly padding: boolean;
  readonly header: Required<RtpHeader>;
  /** Fixed header + CSRC list + extension: where the payload starts. */
  readonly headerLength: number;
  /** A view into the input, without padding. */
  readonly payload: Uint8Array;
  /** RFC 3550 §5.1: padding octets at the end, the last one included (0 when P is clear). */
  readonly paddingLength: number;
}

function checkUint(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`RTP ${name} out of range: ${v}`);
}

/** Header length of a header we would encode: 12 + 4·CC + (4 + extension body). */
export function rtpHeaderLength(header: RtpHeader): number {
  const csrc = header.csrc?.length ?? 0;
  const ext = header.extension ? RTP_EXTENSION_HEADER_LENGTH + header.extension.data.length : 0;
  return RTP_FIXED_HEADER_LENGTH + 4 * csrc + ext;
}

/**
 * Serialise one packet. `paddingLength` (0-255) appends RFC 3550 §5.1 padding: zero octets whose
 * last one holds the count, with the P bit set.
 */
export function encodeRtp(header: RtpHeader, payload: Uint8Array, paddingLength = 0): Buffer {
  checkUint('payload type', header.payloadType, 0x7f);
  checkUint('sequence number', header.sequenceNumber, 0xffff);
  checkUint('timestamp', header.timestamp, 0xffffffff);
  checkUint('SSRC', header.ssrc, 0xffffffff);
  checkUint('padding length', paddingLength, 0xff);
  const csrc = header.csrc ?? [];
  if (csrc.length > RTP_MAX_CSRC) throw new RangeError(`RTP CSRC count out of range: ${csrc.length}`);
  const ext = header.extension ?? null;
  if (ext) {
    checkUint('extension profile', ext.profile, 0xffff);
    if (ext.data.length % 4 !== 0 || ext.data.length / 4 > MAX_EXTENSION_WORDS) {
      throw new RangeError(`RTP extension body must be whole 32-bit words, got ${ext.data.length} bytes`);
    }
  }
  const headerLength = rtpHeaderLength(header);
  const out = Buffer.alloc(headerLength + payload.length + paddingLength);
  out[0] = (RTP_VERSION << 6) | (paddingLength > 0 ? 0x20 : 0) | (ext ? 0x10 : 0) | csrc.length;
  out[1] = (header.marker ? 0x80 : 0) | header.payloadType;
  out.writeUInt16BE(header.sequenceNumber, 2);
  out.writeUInt32BE(header.timestamp, 4);
  out.writeUInt32BE(header.ssrc, 8);
  let off = RTP_FIXED_HEADER_LENGTH;
  for (const id of csrc) {
    checkUint('CSRC', id, 0xffffffff);
    out.writeUInt32BE(id, off);
    off += 4;
  }
  if (ext) {
    out.writeUInt16BE(ext.profile, off);
    out.writeUInt16BE(ext.data.length / 4, off + 2);
    out.set(ext.data, off + RTP_EXTENSION_HEADER_LENGTH);
    off += RTP_EXTENSION_HEADER_LENGTH + ext.data.length;
  }
  out.set(payload, off);
  if (paddingLength > 0) out[out.length - 1] = paddingLength;
  return out;
}

/** Parse one packet; raises `proto_malformed` on anything RFC 3550 §5.1 and §5.3.1 do not allow. */
export function decodeRtp(input: Uint8Array): RtpPacket {
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length < RTP_FIXED_HEADER_LENGTH) {
    throw malformed(`RTP packet shorter than the ${RTP_FIXED_HEADER_LENGTH}-byte fixed header`, { length: buf.length });
  }
  const b0 = buf[0] as number;
  const version = b0 >> 6;
  if (version !== RTP_VERSION) throw malformed(`RTP version ${version}, expected ${RTP_VERSION}`, { version });
  const padding = (b0 & 0x20) !== 0;
  const hasExtension = (b0 & 0x10) !== 0;
  const cc = b0 & 0x0f;
  let off = RTP_FIXED_HEADER_LENGTH + 4 * cc;
  if (buf.length < off) throw malformed('RTP CSRC list truncated', { length: buf.length, csrcCount: cc });
  const csrc: number[] = [];
  for (let i = 0; i < cc; i++) csrc.push(buf.readUInt32BE(RTP_FIXED_HEADER_LENGTH + 4 * i));
  let extension: RtpHeaderExtension | null = null;
  if (hasExtension) {
    if (buf.length < off + RTP_EXTENSION_HEADER_LENGTH) throw malformed('RTP header extension truncated', { length: buf.length });
    const profile = buf.readUInt16BE(off);
    const bodyLength = 4 * buf.readUInt16BE(off + 2);
    const start = off + RTP_EXTENSION_HEADER_LENGTH;
    if (buf.length < start + bodyLength) {
      throw malformed('RTP header extension longer than the packet', { length: buf.length, extensionLength: bodyLength });
    }
    extension = { profile, data: buf.subarray(start, start + bodyLength) };
    off = start + bodyLength;
  }
  let paddingLength = 0;
  if (padding) {
    // RFC 3550 §5.1: the last octet counts the padding, itself included, so it cannot be 0.
    paddingLength = buf[buf.length - 1] as number;
    if (paddingLength === 0 || paddingLength > buf.length - off) {
      throw malformed('RTP padding count is zero or exceeds the payload', { paddingLength, available: buf.length - off });
    }
  }
  const b1 = buf[1] as number;
  return {
    version,
    padding,
    header: {
      marker: (b1 & 0x80) !== 0,
      payloadType: b1 & 0x7f,
      sequenceNumber: buf.readUInt16BE(2),
      timestamp: buf.readUInt32BE(4),
      ssrc: buf.readUInt32BE(8),
      csrc,
      extension,
    },
    headerLength: off,
    payload: buf.subarray(off, buf.length - paddingLength),
    paddingLength,
  };
}
