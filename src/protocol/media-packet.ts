/**
 * The probe <-> reflector media packet: a call-like datagram in one of five shapes, carrying an
 * authenticated trailer that lets the prober measure it and the reflector decide to echo it.
 *
 * ## Wire format (the reflector verifies exactly this)
 *
 *   +------------------------------ shape bytes ------------------------------+---- trailer (32) ----+
 *   | shape header (see below) | filler from the RNG (looks like ciphertext)  | fields (16) | tag (16) |
 *   +--------------------------------------------------------------------------+-------------+----------+
 *
 * The trailer is always the last 32 bytes, whatever the shape, so the reflector never parses a
 * shape: it needs the length and the key only.
 *
 *   fields (clear) = flow id (u32 BE) | sequence (u32 BE) | send time (u64 BE, µs, the sender's
 *                    monotonic clock)
 *   tag            = HMAC-SHA256(key, "callprobe media v1" || packet[0 .. len-32] || clear fields)[0..16]
 *   mask           = HMAC-SHA256(key, "callprobe media mask v1" || tag)[0..16]
 *   on the wire    : packet[len-32 .. len-16] = clear fields XOR mask; packet[len-16 ..] = tag
 *
 * - The tag covers every byte before it, so the reflector echoes only packets made with the
 *   shared key (no open reflector), and a censor cannot rewrite a packet unnoticed. It is
 *   HMAC-SHA256 truncated to 128 bits, half the hash output, as RFC 2104 §5 recommends as the
 *   lower bound. The label separates this use of the key from any other.
 * - The fields are masked (a synthetic-IV construction: the mask is a PRF of the tag) so that
 *   no constant or counting bytes sit at a fixed offset from the end: the flow id and sequence
 *   would otherwise be a fingerprint of callprobe that no real call carries. The mask hides
 *   nothing secret; authentication is the tag's job.
 * - The echo is the request, byte for byte: never larger, so the reflector cannot amplify.
 *
 * Verification (`verifyTag`): read tag, derive mask, unmask the fields, recompute the tag over
 * prefix || clear fields, compare in constant time. If that fails, invert every byte and try
 * once more: that is the `random` control shape (below). Anything else is dropped.
 *
 * ## Shapes (all from flow id, seq, payload size and the RNG; per-flow constants from the flow id)
 *
 * - `rtp`: plain RTP as WebRTC sends Opus: V=2, no extension, PT 111, marker on the first
 *   packet, 48 kHz timestamps; header 12 bytes, then `payloadSize` bytes.
 * - `whatsapp`: WhatsApp's "WARP" RTP as community reverse engineering reports it: first byte
 *   0x90 (V=2, X=1), PT 120, header extension profile 0xDEBE with an empty body (a 16-byte
 *   header), 16 kHz timestamps; then `payloadSize` bytes.
 * - `telegram`: libtgvoip reflector traffic: the 16-byte peer_tag, a 16-byte msg_key, then
 *   AES-IGE ciphertext in whole 16-byte blocks: 32 + roundUp16(payloadSize) bytes.
 * - `stun`: a STUN-framed relay packet (TURN Send indication, RFC 8656 §11: 20-byte header
 *   with the magic cookie, XOR-PEER-ADDRESS, DATA): 36 + roundUp4(payloadSize) bytes.
 * - `random`: the control. The bitwise inverse of a service shape's packet (`controlOf`,
 *   default `rtp`), as Wehe's bit-inverted replays do (Li et al., "A Large-Scale Analysis of
 *   Deployed Traffic Differentiation Practices", SIGCOMM 2019; NEU-SNS/wehe-py3 "...Random"
 *   replay traces): same sizes, same timing, none of the service's bytes. The trailer is computed on the
 *   un-inverted packet and inverted with it; the verifier's second polarity recovers it.
 *
 * Payload sizes: `opusLikeSize` draws 60-160 bytes, i.e. 24-64 kbit/s at 20 ms frames, the
 * range RFC 7587 §3.1.1 recommends for Opus from wideband speech to fullband audio.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { malformed, mismatch } from './errors.js';
import { encodeRtp } from './rtp.js';
import { buildMessage, MAGIC_COOKIE } from './stun.js';
import { ATTR, xorPeerAddress } from './stun-attributes.js';
import { METHOD } from './turn.js';

export const SERVICE_SHAPES = ['whatsapp', 'telegram', 'rtp', 'stun'] as const;
export type ServiceShape = (typeof SERVICE_SHAPES)[number];
export const MEDIA_SHAPES = [...SERVICE_SHAPES, 'random'] as const;
export type MediaShape = (typeof MEDIA_SHAPES)[number];
export type MediaPolarity = 'plain' | 'inverted';

/** Bytes on demand. Production uses `cryptoRng`; tests and reproducible lab runs `deterministicRng`. */
export type Rng = (n: number) => Uint8Array;

// ---------------------------------------------------------------------------------------------
// Trailer

const FIELDS_LENGTH = 16;
/** RFC 2104 §5: truncate to no less than half the hash output (SHA-256: 32 bytes). */
export const TAG_LENGTH = 16;
export const TRAILER_LENGTH = FIELDS_LENGTH + TAG_LENGTH;
/** RFC 2104 §3: keys shorter than the hash output (32 bytes for SHA-256) are strongly discouraged. */
export const MIN_KEY_LENGTH = 32;
const TAG_LABEL = Buffer.from('callprobe media v1');
const MASK_LABEL = Buffer.from('callprobe media mask v1');

/** The trailer lives inside the payload area, so a payload holds at least the trailer. */
export const MIN_PAYLOAD_SIZE = TRAILER_LENGTH;
/**
 * Voice frames are under 300 bytes; 1024 keeps the largest shape (STUN, +36) plus IPv6 and UDP
 * headers (48) under the 1280-byte IPv6 minimum MTU (RFC 8200 §5), so no probe fragments.
 */
export const MAX_PAYLOAD_SIZE = 1024;
/** The decoder's bound: nothing we send is longer than the IPv6 minimum MTU (RFC 8200 §5). */
export const MAX_MEDIA_PACKET_LENGTH = 1280;
/** The shortest packet any shape produces: the 12-byte RTP header plus the minimum payload. */
export const MIN_MEDIA_PACKET_LENGTH = 12 + MIN_PAYLOAD_SIZE;

// ---------------------------------------------------------------------------------------------
// Shape constants

/** 20 ms frames, as VoIP codecs and the calls we imitate send them (docs/protocols.md#media-measurement). */
export const FRAME_MS = 20;
/** RFC 3550 §5.1 (version 2). */
const RTP_V2 = 0x80;
/** The dynamic payload type libwebrtc offers Opus on ("a=rtpmap:111 opus/48000/2" in Chrome's SDP). */
const PT_WEBRTC_OPUS = 111;
/** RFC 7587 §4.1: Opus's RTP clock is always 48 kHz, so a 20 ms frame advances 960. */
const OPUS_TS_PER_FRAME = 48_000 / (1000 / FRAME_MS);
/**
 * WhatsApp audio RTP: PT 120 (MLow/Opus), extension profile 0xDEBE, 16-byte header with an
 * empty extension for speech, 320 timestamp ticks per 20 ms frame (16 kHz). Sources: wacrg.org
 * "WARP, STUN, and relay media transport" (community reverse engineering); oxidezap/whatsapp-rust
 * wacore/src/voip/rtp.rs (RTP_PAYLOAD_TYPE_WHATSAPP_AUDIO, WHATSAPP_RTP_EXTENSION_PROFILE,
 * WHATSAPP_RTP_HEADER_SIZE, its header test advancing 320 per packet); docs/protocols.md#media-shapes.
 */
const PT_WHATSAPP_AUDIO = 120;
const WHATSAPP_EXTENSION_PROFILE = 0xdebe;
const WHATSAPP_TS_PER_FRAME = 320;
/**
 * libtgvoip (grishka/libtgvoip, also vendored in Telegram's apps) VoIPController.cpp,
 * VoIPController::SendPacket: to a relay, `peerTag` (16 bytes) first, then the 16-byte msg_key,
 * then AES-IGE ciphertext (whole 16-byte blocks). Protocol versions before 8 put an 8-byte key
 * fingerprint before msg_key; current clients do not.
 */
const TG_PEER_TAG_LENGTH = 16;
const TG_MSG_KEY_LENGTH = 16;
const AES_BLOCK = 16;
/** RFC 8489 §5: header; RFC 8656 §18.3: XOR-PEER-ADDRESS (IPv4) is 4 + 8 bytes; DATA header 4. */
const STUN_OVERHEAD = 20 + 12 + 4;

// ---------------------------------------------------------------------------------------------
// Randomness

export const cryptoRng: Rng = (n) => randomBytes(n);

/**
 * A reproducible byte stream: SHA-256(seed || u32 BE counter) blocks, concatenated. For tests
 * and for lab runs that must be replayable; never for anything an adversary should not predict.
 */
export function deterministicRng(seed: string | Uint8Array): Rng {
  const seedBytes = typeof seed === 'string' ? Buffer.from(seed, 'utf8') : Buffer.from(seed);
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (n: number) => {
    const chunks: Buffer[] = [pool];
    let have = pool.length;
    while (have < n) {
      const ctr = Buffer.alloc(4);
      ctr.writeUInt32BE(counter++ >>> 0);
      const block = createHash('sha256').update(seedBytes).update(ctr).digest();
      chunks.push(block);
      have += block.length;
    }
    const all = Buffer.concat(chunks);
    pool = all.subarray(n);
    return all.subarray(0, n);
  };
}

/** A uniform integer in [min, max] by rejection sampling (no modulo bias); range ≤ 2^32. */
export function uniformInt(rng: Rng, min: number, max: number): number {
  const range = max - min + 1;
  if (!Number.isInteger(min) || !Number.isInteger(max) || range < 1 || range > 2 ** 32) {
    throw new RangeError(`bad integer range [${min}, ${max}]`);
  }
  const limit = Math.floor(2 ** 32 / range) * range;
  // A broken RNG (constant bytes above the limit) must not hang the sender: after 64 draws,
  // each rejected with probability < 1/2, take the biased value.
  for (let i = 0; i < 64; i++) {
    const v = Buffer.from(rng(4)).readUInt32BE(0);
    if (v < limit) return min + (v % range);
  }
  return min + (Buffer.from(rng(4)).readUInt32BE(0) % range);
}

/** RFC 7587 §3.1.1: 24-64 kbit/s at 20 ms frames is 60-160 bytes per packet. */
export const OPUS_LIKE_MIN_SIZE = 60;
export const OPUS_LIKE_MAX_SIZE = 160;

/** A payload size drawn like Opus voice: uniform over 60-160 bytes. */
export function opusLikeSize(rng: Rng): number {
  return uniformInt(rng, OPUS_LIKE_MIN_SIZE, OPUS_LIKE_MAX_SIZE);
}

// ---------------------------------------------------------------------------------------------
// Per-flow constants

export interface FlowConstants {
  /** RTP SSRC: the flow id itself (both are random per stream, RFC 3550 §8.1). */
  readonly ssrc: number;
  /** RFC 3550 §5.1: initial sequence number and timestamp SHOULD be random. */
  readonly rtpSequenceBase: number;
  readonly rtpTimestampBase: number;
  /** Telegram's per-call peer_tag. */
  readonly peerTag: Buffer;
  /** The STUN shape's XOR-PEER-ADDRESS; the reflector never interprets it. */
  readonly stunPeer: { readonly family: 'IPv4'; readonly address: string; readonly port: number };
}

/**
 * What stays constant for a whole stream, as it does in a real call, derived from the flow id
 * with SHA-256 so that every packet of a flow agrees without any state.
 */
export function flowConstants(flowId: number): FlowConstants {
  checkUint32('flow id', flowId);
  const id = Buffer.alloc(4);
  id.writeUInt32BE(flowId);
  const h = createHash('sha256').update('callprobe flow v1').update(id).digest();
  return {
    ssrc: flowId,
    rtpSequenceBase: h.readUInt16BE(0),
    rtpTimestampBase: h.readUInt32BE(2),
    peerTag: Buffer.from(h.subarray(6, 6 + TG_PEER_TAG_LENGTH)),
    // A unicast-looking IPv4 (first octet 1..223) and an unprivileged port.
    stunPeer: {
      family: 'IPv4',
      address: `${((h[22] as number) % 223) + 1}.${h[23]}.${h[24]}.${h[25]}`,
      port: 1024 + (h.readUInt16BE(26) % (65536 - 1024)),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Encoding

export interface EncodeMediaPacketInput {
  readonly shape: MediaShape;
  /** For `random`: the service shape whose bytes are inverted. Default `rtp`. */
  readonly controlOf?: ServiceShape;
  readonly flowId: number;
  /** 0-based packet index in the stream (u32). */
  readonly seq: number;
  /** Sender's monotonic clock, whole µs. */
  readonly sendTimeUs: number;
  /** Codec payload bytes, MIN_PAYLOAD_SIZE..MAX_PAYLOAD_SIZE; the trailer is inside it. */
  readonly payloadSize: number;
  readonly key: Uint8Array;
  readonly rng: Rng;
}

/** Bytes on the wire for a shape and payload size. */
export function mediaPacketLength(shape: MediaShape, payloadSize: number, controlOf: ServiceShape = 'rtp'): number {
  const base = shape === 'random' ? controlOf : shape;
  switch (base) {
    case 'rtp':
      return 12 + payloadSize;
    case 'whatsapp':
      return 16 + payloadSize;
    case 'telegram':
      return TG_PEER_TAG_LENGTH + TG_MSG_KEY_LENGTH + roundUp(payloadSize, AES_BLOCK);
    case 'stun':
      return STUN_OVERHEAD + roundUp(payloadSize, 4);
  }
}

export function encodeMediaPacket(input: EncodeMediaPacketInput): Buffer {
  checkKey(input.key);
  checkUint32('flow id', input.flowId);
  checkUint32('sequence', input.seq);
  if (!Number.isSafeInteger(input.sendTimeUs) || input.sendTimeUs < 0) throw new RangeError(`send time out of range: ${input.sendTimeUs}`);
  if (!Number.isInteger(input.payloadSize) || input.payloadSize < MIN_PAYLOAD_SIZE || input.payloadSize > MAX_PAYLOAD_SIZE) {
    throw new RangeError(`payload size must be ${MIN_PAYLOAD_SIZE}..${MAX_PAYLOAD_SIZE}, got ${input.payloadSize}`);
  }
  if (!(MEDIA_SHAPES as readonly string[]).includes(input.shape)) throw new RangeError(`unknown media shape: ${input.shape}`);
  const base: ServiceShape = input.shape === 'random' ? (input.controlOf ?? 'rtp') : input.shape;
  if (!(SERVICE_SHAPES as readonly string[]).includes(base)) throw new RangeError(`unknown control base shape: ${base}`);
  const pkt = buildShape(base, flowConstants(input.flowId), input.seq, input.payloadSize, input.rng);
  sealTrailer(pkt, input.key, input.flowId, input.seq, input.sendTimeUs);
  if (input.shape === 'random') invertInPlace(pkt);
  return pkt;
}

/** A shape's bytes with the last TRAILER_LENGTH bytes zero, ready for `sealTrailer`. */
function buildShape(shape: ServiceShape, flow: FlowConstants, seq: number, payloadSize: number, rng: Rng): Buffer {
  const payload = (length: number): Buffer => Buffer.concat([Buffer.from(rng(length - TRAILER_LENGTH)), Buffer.alloc(TRAILER_LENGTH)]);
  switch (shape) {
    case 'rtp':
      return encodeRtp(
        {
          marker: seq === 0, // RFC 3551 §4.1: marker on the first packet of a talkspurt
          payloadType: PT_WEBRTC_OPUS,
          sequenceNumber: (flow.rtpSequenceBase + seq) % 0x10000,
          timestamp: (flow.rtpTimestampBase + ((seq * OPUS_TS_PER_FRAME) % 2 ** 32)) % 2 ** 32,
          ssrc: flow.ssrc,
        },
        payload(payloadSize),
      );
    case 'whatsapp':
      return encodeRtp(
        {
          marker: seq === 0, // whatsapp-rust RtpStream: marker on the first speech packet
          payloadType: PT_WHATSAPP_AUDIO,
          sequenceNumber: (flow.rtpSequenceBase + seq) % 0x10000,
          timestamp: (flow.rtpTimestampBase + ((seq * WHATSAPP_TS_PER_FRAME) % 2 ** 32)) % 2 ** 32,
          ssrc: flow.ssrc,
          extension: { profile: WHATSAPP_EXTENSION_PROFILE, data: new Uint8Array(0) },
        },
        payload(payloadSize),
      );
    case 'telegram': {
      const msgKey = Buffer.from(rng(TG_MSG_KEY_LENGTH));
      return Buffer.concat([flow.peerTag, msgKey, payload(roundUp(payloadSize, AES_BLOCK))]);
    }
    case 'stun': {
      const transactionId = Buffer.from(rng(12));
      // DATA's value is whole 4-byte words, so no padding follows it and the trailer ends the message.
      return buildMessage({
        method: METHOD.SEND, // RFC 8656 §11.1: a Send indication carries data to a peer
        class: 'indication',
        transactionId,
        attributes: [xorPeerAddress(flow.stunPeer), { type: ATTR.DATA, value: payload(roundUp(payloadSize, 4)) }],
      });
    }
  }
}

function sealTrailer(pkt: Buffer, key: Uint8Array, flowId: number, seq: number, sendTimeUs: number): void {
  const fieldsAt = pkt.length - TRAILER_LENGTH;
  const tagAt = pkt.length - TAG_LENGTH;
  pkt.writeUInt32BE(flowId, fieldsAt);
  pkt.writeUInt32BE(seq, fieldsAt + 4);
  pkt.writeBigUInt64BE(BigInt(sendTimeUs), fieldsAt + 8);
  const tag = computeTag(key, pkt.subarray(0, fieldsAt), pkt.subarray(fieldsAt, tagAt));
  tag.copy(pkt, tagAt);
  const mask = computeMask(key, tag);
  for (let i = 0; i < FIELDS_LENGTH; i++) pkt[fieldsAt + i] = (pkt[fieldsAt + i] as number) ^ (mask[i] as number);
}

function computeTag(key: Uint8Array, prefix: Uint8Array, clearFields: Uint8Array): Buffer {
  return createHmac('sha256', key).update(TAG_LABEL).update(prefix).update(clearFields).digest().subarray(0, TAG_LENGTH);
}

function computeMask(key: Uint8Array, tag: Uint8Array): Buffer {
  return createHmac('sha256', key).update(MASK_LABEL).update(tag).digest().subarray(0, FIELDS_LENGTH);
}

// ---------------------------------------------------------------------------------------------
// Verification and decoding

interface OpenedFields {
  flowId: number;
  seq: number;
  sendTimeUs: number;
}

/** Check one polarity; returns the clear fields or null. Never throws. */
function open(buf: Buffer, key: Uint8Array): OpenedFields | null {
  const fieldsAt = buf.length - TRAILER_LENGTH;
  const tagAt = buf.length - TAG_LENGTH;
  const tag = buf.subarray(tagAt);
  const mask = computeMask(key, tag);
  const clear = Buffer.alloc(FIELDS_LENGTH);
  for (let i = 0; i < FIELDS_LENGTH; i++) clear[i] = (buf[fieldsAt + i] as number) ^ (mask[i] as number);
  const expected = computeTag(key, buf.subarray(0, fieldsAt), clear);
  if (!timingSafeEqual(expected, tag)) return null;
  return { flowId: clear.readUInt32BE(0), seq: clear.readUInt32BE(4), sendTimeUs: Number(clear.readBigUInt64BE(8)) };
}

function inverted(buf: Uint8Array): Buffer {
  const out = Buffer.from(buf);
  invertInPlace(out);
  return out;
}

function invertInPlace(buf: Buffer): void {
  for (let i = 0; i < buf.length; i++) buf[i] = ~(buf[i] as number) & 0xff;
}

function asBuffer(input: Uint8Array): Buffer {
  return Buffer.from(input.buffer, input.byteOffset, input.byteLength);
}

const lengthOk = (n: number): boolean => n >= MIN_MEDIA_PACKET_LENGTH && n <= MAX_MEDIA_PACKET_LENGTH;

/**
 * Is this an authentic probe packet? 'plain' for a service shape, 'inverted' for the `random`
 * control, null otherwise (wrong key, tampered, truncated, not ours). What the reflector calls
 * before echoing; it never throws on wire input.
 */
export function verifyTag(input: Uint8Array, key: Uint8Array): MediaPolarity | null {
  checkKey(key);
  if (!lengthOk(input.length)) return null;
  const buf = asBuffer(input);
  if (open(buf, key)) return 'plain';
  if (open(inverted(buf), key)) return 'inverted';
  return null;
}

export interface DecodedMediaPacket {
  readonly flowId: number;
  readonly seq: number;
  readonly sendTimeUs: number;
  /** `random` when the packet arrived inverted; otherwise the service shape its framing shows. */
  readonly shape: MediaShape;
  /** For `random`: the service shape that was inverted; null otherwise. */
  readonly controlOf: ServiceShape | null;
  readonly polarity: MediaPolarity;
  readonly length: number;
}

/**
 * Authenticate and read a probe packet. Raises `proto_malformed` when the length cannot be one
 * of ours and `proto_mismatch` when the tag does not verify under `key` in either polarity.
 */
export function decodeMediaPacket(input: Uint8Array, key: Uint8Array): DecodedMediaPacket {
  checkKey(key);
  if (!lengthOk(input.length)) {
    throw malformed(`media packet length ${input.length} outside ${MIN_MEDIA_PACKET_LENGTH}..${MAX_MEDIA_PACKET_LENGTH}`, { length: input.length });
  }
  const buf = asBuffer(input);
  let fields = open(buf, key);
  let plain: Buffer = buf;
  let polarity: MediaPolarity = 'plain';
  if (!fields) {
    plain = inverted(buf);
    fields = open(plain, key);
    polarity = 'inverted';
  }
  if (!fields) throw mismatch('media packet tag does not verify under our key', { length: buf.length });
  const base = detectShape(plain);
  return {
    ...fields,
    shape: polarity === 'inverted' ? 'random' : base,
    controlOf: polarity === 'inverted' ? base : null,
    polarity,
    length: buf.length,
  };
}

/**
 * Which service shape an (un-inverted) authentic packet's framing shows. Only for evidence and
 * metrics labels: authentication never depends on it.
 */
function detectShape(p: Buffer): ServiceShape {
  const b0 = p[0] as number;
  const pt = (p[1] as number) & 0x7f;
  if (b0 === (RTP_V2 | 0x10) && pt === PT_WHATSAPP_AUDIO && p.length >= 16 && p.readUInt16BE(12) === WHATSAPP_EXTENSION_PROFILE) return 'whatsapp';
  if ((b0 & 0xc0) === RTP_V2 && pt === PT_WEBRTC_OPUS) return 'rtp';
  // RFC 8489 §5: the two top bits of a STUN message are zero, and the cookie follows the length.
  if ((b0 & 0xc0) === 0 && p.readUInt32BE(4) === MAGIC_COOKIE) return 'stun';
  return 'telegram';
}

// ---------------------------------------------------------------------------------------------

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function checkUint32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${name} out of range: ${v}`);
}

/** A short key is a configuration error, never wire input: it raises RangeError. */
function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length < MIN_KEY_LENGTH) {
    throw new RangeError(`media key must be at least ${MIN_KEY_LENGTH} bytes (RFC 2104 §3)`);
  }
}
