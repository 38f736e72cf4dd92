/**
 * What the reflector speaks besides the media packets of src/protocol/media-packet.ts: the
 * framing of media packets over TCP and TLS, and the authenticated request for the TCP stream
 * test ("send me N bytes"). Pure: bytes in, values out; shared by the reflector and the `stream`
 * phase.
 *
 * ## Framing over TCP/TLS (RFC 4571 §2)
 * Each packet is preceded by a 16-bit big-endian length, as RTP over connection-oriented
 * transport is framed. The reflector echoes a framed media packet as the same frame.
 *
 * ## The stream request (48 bytes, sent as one RFC 4571 frame)
 *
 *   nonce (16, random) | fields XOR mask (16) | tag (16)
 *   fields = bytes requested (u32 BE) | 12 zero bytes
 *   tag    = HMAC-SHA256(key, "callprobe stream v1" || nonce || fields)[0..16]
 *   mask   = HMAC-SHA256(key, "callprobe stream mask v1" || tag)[0..16]
 *
 * The same construction as the media trailer (media-packet.ts): every byte on the wire looks
 * random, so no constant identifies callprobe, and only holders of the key can ask for data.
 *
 * ## The reply (raw bytes, not framed)
 *
 *   proof (16) = HMAC-SHA256(key, "callprobe stream reply v1" || tag)[0..16], then N bytes
 *
 * The proof shows that the reflector itself answered this request (a middlebox that answers in
 * its place cannot forge it); the N bytes are random, like the ciphertext of a real download.
 * The reflector then sends nothing more and waits for the client to close.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** RFC 4571 §2: a 16-bit length field. */
export const FRAME_HEADER_LENGTH = 2;
export const MAX_FRAME_LENGTH = 0xffff;

export function encodeFrame(packet: Uint8Array): Buffer {
  if (packet.length > MAX_FRAME_LENGTH) throw new RangeError(`frame too long: ${packet.length}`);
  const out = Buffer.alloc(FRAME_HEADER_LENGTH + packet.length);
  out.writeUInt16BE(packet.length, 0);
  out.set(packet, FRAME_HEADER_LENGTH);
  return out;
}

/** Cuts a TCP byte stream into RFC 4571 frames; holds at most one frame's worth of bytes. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  /** Returns the frames completed by `chunk`, in order. */
  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Buffer[] = [];
    while (this.pending.length >= FRAME_HEADER_LENGTH) {
      const length = this.pending.readUInt16BE(0);
      if (this.pending.length < FRAME_HEADER_LENGTH + length) break;
      frames.push(this.pending.subarray(FRAME_HEADER_LENGTH, FRAME_HEADER_LENGTH + length));
      this.pending = this.pending.subarray(FRAME_HEADER_LENGTH + length);
    }
    return frames;
  }
}

const NONCE_LENGTH = 16;
const FIELDS_LENGTH = 16;
const TAG_LENGTH = 16;
export const STREAM_REQUEST_LENGTH = NONCE_LENGTH + FIELDS_LENGTH + TAG_LENGTH;
export const STREAM_PROOF_LENGTH = 16;
/** u32: the largest request the format can carry; the reflector's config caps it far lower. */
export const MAX_STREAM_BYTES = 0xffffffff;
const REQUEST_LABEL = Buffer.from('callprobe stream v1');
const MASK_LABEL = Buffer.from('callprobe stream mask v1');
const REPLY_LABEL = Buffer.from('callprobe stream reply v1');

function hmac16(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, 16);
}

export interface StreamRequest {
  /** The 48 bytes to send (unframed). */
  readonly bytes: Buffer;
  /** The proof the reply must start with. */
  readonly proof: Buffer;
}

export function encodeStreamRequest(bytesRequested: number, key: Uint8Array, nonce: Uint8Array = randomBytes(NONCE_LENGTH)): StreamRequest {
  if (!Number.isInteger(bytesRequested) || bytesRequested < 0 || bytesRequested > MAX_STREAM_BYTES) {
    throw new RangeError(`stream bytes out of range: ${bytesRequested}`);
  }
  if (nonce.length !== NONCE_LENGTH) throw new RangeError(`nonce must be ${NONCE_LENGTH} bytes`);
  const fields = Buffer.alloc(FIELDS_LENGTH);
  fields.writeUInt32BE(bytesRequested, 0);
  const tag = hmac16(key, REQUEST_LABEL, nonce, fields);
  const mask = hmac16(key, MASK_LABEL, tag);
  const masked = Buffer.alloc(FIELDS_LENGTH);
  for (let i = 0; i < FIELDS_LENGTH; i++) masked[i] = (fields[i] as number) ^ (mask[i] as number);
  return { bytes: Buffer.concat([nonce, masked, tag]), proof: hmac16(key, REPLY_LABEL, tag) };
}

/** The requested byte count and the reply's proof, or null if this is not an authentic request. */
export function verifyStreamRequest(input: Uint8Array, key: Uint8Array): { bytesRequested: number; proof: Buffer } | null {
  if (input.length !== STREAM_REQUEST_LENGTH) return null;
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const nonce = buf.subarray(0, NONCE_LENGTH);
  const tag = buf.subarray(NONCE_LENGTH + FIELDS_LENGTH);
  const mask = hmac16(key, MASK_LABEL, tag);
  const fields = Buffer.alloc(FIELDS_LENGTH);
  for (let i = 0; i < FIELDS_LENGTH; i++) fields[i] = (buf[NONCE_LENGTH + i] as number) ^ (mask[i] as number);
  if (!timingSafeEqual(hmac16(key, REQUEST_LABEL, nonce, fields), tag)) return null;
  // Reserved bytes must be zero: a later version may give them a meaning.
  if (fields.subarray(4).some((b) => b !== 0)) return null;
  return { bytesRequested: fields.readUInt32BE(0), proof: hmac16(key, REPLY_LABEL, tag) };
}
