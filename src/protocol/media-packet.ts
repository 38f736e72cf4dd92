/**
 * The probe <-> reflector media packet: a call-like datagram in one of the shapes below, carrying an
 * authenticated trailer that lets the prober measure it and the reflector decide to echo it, and
 * the reflector's echo, which tells the prober how much of the flow reached it.
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
 *   tag            = HMAC-SHA256(key, "callprobe media v2" || packet[0 .. len-32] || clear fields)[0..16]
 *   mask           = HMAC-SHA256(key, "callprobe media mask v2" || tag)[0..16]
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
 * - The echo (`encodeMediaEcho`) is the request with its trailer replaced by the reflector's own:
 *   the flow id, the sequence number, and how many packets and bytes of this flow the reflector
 *   has received, authenticated the same way under labels of its own. The same length as the
 *   request, so the reflector cannot amplify; the prober learns the loss of each direction.
 * - Versions: the labels "... v1" are the requests of probers from before the echo counts; a
 *   reflector echoes those byte for byte, as it always did, so an upgraded reflector serves old
 *   probers. A prober of this version needs a reflector of this version (upgrade reflectors first).
 *
 * Verification (`verifyMediaRequest`): read tag, derive mask, unmask the fields, recompute the tag
 * over prefix || clear fields, compare in constant time, for v2 then v1. If that fails, invert
 * every byte and try once more: that is the `random` control shape (below). Anything else is dropped.
 *
 * ## Shapes (all from flow id, seq, payload size and the RNG; per-flow constants from the flow id)
 *
 * - `rtp`: plain RTP as WebRTC sends Opus: V=2, no extension, PT 111, marker on the first
 *   packet, 48 kHz timestamps; header 12 bytes, then `payloadSize` bytes.
 * - `whatsapp`: WhatsApp's "WARP" RTP as community reverse engineering reports it: first byte
 *   0x90 (V=2, X=1), PT 120, header extension profile 0xDEBE with an empty body (a 16-byte
 *   header), 16 kHz timestamps; then `payloadSize` bytes.
 * - `whatsapp-stun`: WhatsApp's relay dialect of STUN as classifiers recognise it: message type
 *   0x0800 with the magic cookie and an exact length, attribute 0x4002 (8 bytes: a millisecond
 *   clock) and 0x4000 carrying the payload (nDPI `src/lib/protocols/stun.c` labels type
 *   0x0800-0x0802 and attributes 0x4000-0x4004/0x4007 WhatsAppCall; the 0x0800 messages of its
 *   capture `stun_wa_call.pcapng` carry 0x4000): 36 + roundUp4(payloadSize) bytes.
 * - `telegram`: libtgvoip reflector traffic: the 16-byte peer_tag, a 16-byte msg_key, then
 *   AES-IGE ciphertext in whole 16-byte blocks: 32 + roundUp16(payloadSize) bytes.
 * - `telegram-reflector`: tgcalls' reflector framing, what today's apps send through a reflector
 *   (TelegramMessenger/tgcalls `tgcalls/v2/ReflectorPort.cpp` `ReflectorPort::SendTo`): the
 *   16-byte tag (the first 12 bytes of the call's peer_tag, then the other side's 4-byte tag),
 *   our own 4-byte random tag, the data length (u32 BE), then the data, an RTP packet as WebRTC
 *   sends Opus (V=2, PT 111), padded to whole 4-byte words: 36 + roundUp4(payloadSize) bytes.
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
import { createHash, randomBytes } from 'node:crypto';
import { malformed, mismatch } from './errors.js';
import { encodeRtp } from './rtp.js';
import { SEALED_FIELDS_LENGTH, SEALED_TAG_LENGTH, saturateUint32, seal, unseal, type SealLabels } from './sealed.js';
import { buildMessage, MAGIC_COOKIE } from './stun.js';
import { ATTR, xorPeerAddress } from './stun-attributes.js';
import { METHOD } from './turn.js';

export const SERVICE_SHAPES = ['whatsapp', 'whatsapp-stun', 'telegram', 'telegram-reflector', 'rtp', 'stun'] as const;
export type ServiceShape = (typeof SERVICE_SHAPES)[number];
export const MEDIA_SHAPES = [...SERVICE_SHAPES, 'random'] as const;
export type MediaShape = (typeof MEDIA_SHAPES)[number];
export type MediaPolarity = 'plain' | 'inverted';

/** Bytes on demand. Production uses `cryptoRng`; tests and reproducible lab runs `deterministicRng`. */
export type Rng = (n: number) => Uint8Array;

// ---------------------------------------------------------------------------------------------
// Trailer

const FIELDS_LENGTH = SEALED_FIELDS_LENGTH;
/** RFC 2104 §5: truncate to no less than half the hash output (SHA-256: 32 bytes). */
export const TAG_LENGTH = SEALED_TAG_LENGTH;
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
/**
 * WhatsApp's relay STUN: message type 0x0800 (method 0x200, class request), the attributes nDPI
 * treats as WhatsApp's, 0x4002 with 8 bytes (in nDPI's captures its value reads as a millisecond
 * epoch time) and 0x4000 (in the captures a 102- or 150-byte token; ours carries the payload).
 */
const WA_STUN_METHOD = 0x200;
const WA_STUN_TYPE = 0x0800;
const WA_ATTR_PAYLOAD = 0x4000;
const WA_ATTR_CLOCK = 0x4002;
const WA_STUN_OVERHEAD = 20 + (4 + 8) + 4;
/** tgcalls reflector data: tag (16) + sender tag (4) + length (4), then an RTP header (12). */
const TG_REFLECTOR_HEADER = TG_PEER_TAG_LENGTH + 4 + 4;
const TG_REFLECTOR_OVERHEAD = TG_REFLECTOR_HEADER + 12;

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
  /** tgcalls: the other side's tag (the last 4 bytes of the target tag) and our own random tag. */
  readonly reflectorPeerTag: Buffer;
  readonly reflectorSenderTag: Buffer;
  /** whatsapp-stun: where its millisecond clock starts (a per-flow point in 2020-2033, never the real time). */
  readonly waClockBaseMs: number;
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
    // A second hash for the constants of the shapes added later, so the first ones keep their values.
    ...extraFlowConstants(id),
  };
}

function extraFlowConstants(id: Buffer): Pick<FlowConstants, 'reflectorPeerTag' | 'reflectorSenderTag' | 'waClockBaseMs'> {
  const h = createHash('sha256').update('callprobe flow extra v1').update(id).digest();
  return {
    reflectorPeerTag: Buffer.from(h.subarray(0, 4)),
    reflectorSenderTag: Buffer.from(h.subarray(4, 8)),
    waClockBaseMs: WA_CLOCK_FROM_MS + h.readUInt32BE(8) * 100,
  };
}

/** 2020-01-01T00:00:00Z; 2^32 steps of 100 ms reach into 2033. */
const WA_CLOCK_FROM_MS = 1_577_836_800_000;

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
    case 'whatsapp-stun':
      return WA_STUN_OVERHEAD + roundUp(payloadSize, 4);
    case 'telegram':
      return TG_PEER_TAG_LENGTH + TG_MSG_KEY_LENGTH + roundUp(payloadSize, AES_BLOCK);
    case 'telegram-reflector':
      return TG_REFLECTOR_OVERHEAD + roundUp(payloadSize, 4);
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
    case 'whatsapp-stun': {
      const clock = Buffer.alloc(8);
      clock.writeBigUInt64BE(BigInt(flow.waClockBaseMs + seq * FRAME_MS));
      // The payload is whole 4-byte words: no padding, so the trailer ends the message.
      return buildMessage({
        method: WA_STUN_METHOD,
        class: 'request',
        transactionId: Buffer.from(rng(12)),
        attributes: [
          { type: WA_ATTR_CLOCK, value: clock },
          { type: WA_ATTR_PAYLOAD, value: payload(roundUp(payloadSize, 4)) },
        ],
      });
    }
    case 'telegram': {
      const msgKey = Buffer.from(rng(TG_MSG_KEY_LENGTH));
      return Buffer.concat([flow.peerTag, msgKey, payload(roundUp(payloadSize, AES_BLOCK))]);
    }
    case 'telegram-reflector': {
      const rtp = encodeRtp(
        {
          marker: seq === 0,
          payloadType: PT_WEBRTC_OPUS,
          sequenceNumber: (flow.rtpSequenceBase + seq) % 0x10000,
          timestamp: (flow.rtpTimestampBase + ((seq * OPUS_TS_PER_FRAME) % 2 ** 32)) % 2 ** 32,
          ssrc: flow.ssrc,
        },
        payload(roundUp(payloadSize, 4)),
      );
      const length = Buffer.alloc(4);
      length.writeUInt32BE(rtp.length);
      // The data is whole words already, so tgcalls' zero padding adds nothing and the trailer ends the packet.
      return Buffer.concat([flow.peerTag.subarray(0, 12), flow.reflectorPeerTag, flow.reflectorSenderTag, length, rtp]);
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

/**
 * The HMAC labels of each kind of trailer. A request's labels say what its sender wants back:
 * v1 (probers before the echo counts) is echoed byte for byte, v2 gets the echo trailer; the echo
 * has labels of its own, so a request can never pass for an echo or the other way round.
 */
const REQUEST_V1: SealLabels = { tag: Buffer.from('callprobe media v1'), mask: Buffer.from('callprobe media mask v1') };
const REQUEST_V2: SealLabels = { tag: Buffer.from('callprobe media v2'), mask: Buffer.from('callprobe media mask v2') };
const ECHO: SealLabels = { tag: Buffer.from('callprobe media echo v1'), mask: Buffer.from('callprobe media echo mask v1') };

/** Writes `clear` (16 bytes) as the trailer of `pkt`, sealed over everything before it (./sealed.ts). */
function sealInto(pkt: Buffer, key: Uint8Array, labels: SealLabels, clear: Buffer): void {
  const fieldsAt = pkt.length - TRAILER_LENGTH;
  seal(key, labels, pkt.subarray(0, fieldsAt), clear).wire.copy(pkt, fieldsAt);
}

function sealTrailer(pkt: Buffer, key: Uint8Array, flowId: number, seq: number, sendTimeUs: number): void {
  const clear = Buffer.alloc(FIELDS_LENGTH);
  clear.writeUInt32BE(flowId, 0);
  clear.writeUInt32BE(seq, 4);
  clear.writeBigUInt64BE(BigInt(sendTimeUs), 8);
  sealInto(pkt, key, REQUEST_V2, clear);
}

// ---------------------------------------------------------------------------------------------
// Verification and decoding

/** Checks one polarity under one kind of trailer; returns the 16 clear field bytes or null. Never throws. */
function open(buf: Buffer, key: Uint8Array, labels: SealLabels): Buffer | null {
  const fieldsAt = buf.length - TRAILER_LENGTH;
  return unseal(key, labels, buf.subarray(0, fieldsAt), buf.subarray(fieldsAt))?.fields ?? null;
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

/** Which request version a packet is: v1 is echoed verbatim, v2 with the reflector's counts. */
export type MediaRequestVersion = 1 | 2;

export interface VerifiedMediaRequest {
  readonly polarity: MediaPolarity;
  readonly version: MediaRequestVersion;
  /** The packet un-inverted (for `inverted`, a copy; else the input itself). */
  readonly plain: Buffer;
  readonly flowId: number;
  readonly seq: number;
  readonly sendTimeUs: number;
}

/**
 * Is this an authentic probe packet, and which? Both polarities (the `random` control arrives
 * inverted) and both request versions; null for anything else (wrong key, tampered, truncated,
 * not ours, an echo). Never throws on wire input.
 */
export function verifyMediaRequest(input: Uint8Array, key: Uint8Array): VerifiedMediaRequest | null {
  checkKey(key);
  if (!lengthOk(input.length)) return null;
  const buf = asBuffer(input);
  for (const polarity of ['plain', 'inverted'] as const) {
    const plain = polarity === 'plain' ? buf : inverted(buf);
    for (const [version, labels] of [[2, REQUEST_V2], [1, REQUEST_V1]] as const) {
      const clear = open(plain, key, labels);
      if (clear) return { polarity, version, plain, flowId: clear.readUInt32BE(0), seq: clear.readUInt32BE(4), sendTimeUs: Number(clear.readBigUInt64BE(8)) };
    }
  }
  return null;
}

/**
 * Is this an authentic probe packet? 'plain' for a service shape, 'inverted' for the `random`
 * control, null otherwise (wrong key, tampered, truncated, not ours). It never throws on wire input.
 */
export function verifyTag(input: Uint8Array, key: Uint8Array): MediaPolarity | null {
  return verifyMediaRequest(input, key)?.polarity ?? null;
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
  readonly version: MediaRequestVersion;
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
  const v = verifyMediaRequest(input, key);
  if (!v) throw mismatch('media packet tag does not verify under our key', { length: input.length });
  return { ...describePacket(v.plain, v.polarity), flowId: v.flowId, seq: v.seq, sendTimeUs: v.sendTimeUs, version: v.version };
}

function describePacket(plain: Buffer, polarity: MediaPolarity): Pick<DecodedMediaPacket, 'shape' | 'controlOf' | 'polarity' | 'length'> {
  const base = detectShape(plain);
  return { shape: polarity === 'inverted' ? 'random' : base, controlOf: polarity === 'inverted' ? base : null, polarity, length: plain.length };
}

// ---------------------------------------------------------------------------------------------
// The echo (v2 requests)

/** What the reflector had received of the echoed packet's flow when it echoed it (that packet included). */
export interface ReceiveCounts {
  readonly packets: number;
  readonly bytes: number;
}

/**
 * The reflector's echo of a v2 request: the request's bytes before its trailer, unchanged (the
 * shape goes back the way it came), then an echo trailer of the same 32 bytes:
 *
 *   fields (clear) = flow id (u32) | sequence (u32) | packets received (u32) | bytes received (u32)
 *   tag, mask      = as the request's, under the labels "callprobe media echo v1" and
 *                    "callprobe media echo mask v1"
 *
 * inverted as a whole when the request came inverted. The same length as the request: the
 * reflector still never amplifies. Counts saturate at 2^32 - 1.
 */
export function encodeMediaEcho(request: VerifiedMediaRequest, key: Uint8Array, counts: ReceiveCounts): Buffer {
  checkKey(key);
  const echo = Buffer.from(request.plain);
  const clear = Buffer.alloc(FIELDS_LENGTH);
  clear.writeUInt32BE(request.flowId, 0);
  clear.writeUInt32BE(request.seq, 4);
  clear.writeUInt32BE(saturateUint32(counts.packets), 8);
  clear.writeUInt32BE(saturateUint32(counts.bytes), 12);
  sealInto(echo, key, ECHO, clear);
  if (request.polarity === 'inverted') invertInPlace(echo);
  return echo;
}

export interface DecodedMediaEcho extends Pick<DecodedMediaPacket, 'shape' | 'controlOf' | 'polarity' | 'length'> {
  readonly flowId: number;
  readonly seq: number;
  /** The reflector's counts of this flow when it echoed this packet. */
  readonly received: ReceiveCounts;
}

/**
 * Authenticate and read an echo. `proto_malformed` for a length none of ours has, `proto_mismatch`
 * for anything that is not an echo under `key` (a request sent back verbatim included).
 */
export function decodeMediaEcho(input: Uint8Array, key: Uint8Array): DecodedMediaEcho {
  checkKey(key);
  if (!lengthOk(input.length)) {
    throw malformed(`media echo length ${input.length} outside ${MIN_MEDIA_PACKET_LENGTH}..${MAX_MEDIA_PACKET_LENGTH}`, { length: input.length });
  }
  const buf = asBuffer(input);
  for (const polarity of ['plain', 'inverted'] as const) {
    const plain = polarity === 'plain' ? buf : inverted(buf);
    const clear = open(plain, key, ECHO);
    if (clear) {
      return {
        ...describePacket(plain, polarity),
        flowId: clear.readUInt32BE(0),
        seq: clear.readUInt32BE(4),
        received: { packets: clear.readUInt32BE(8), bytes: clear.readUInt32BE(12) },
      };
    }
  }
  throw mismatch('media echo tag does not verify under our key', { length: buf.length });
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
  if ((b0 & 0xc0) === 0 && p.readUInt32BE(4) === MAGIC_COOKIE) return p.readUInt16BE(0) === WA_STUN_TYPE ? 'whatsapp-stun' : 'stun';
  // tgcalls: the length field after the two tags counts the rest, an RTP packet.
  if (p.length >= TG_REFLECTOR_OVERHEAD && p.readUInt32BE(TG_REFLECTOR_HEADER - 4) === p.length - TG_REFLECTOR_HEADER && ((p[TG_REFLECTOR_HEADER] as number) & 0xc0) === RTP_V2) {
    return 'telegram-reflector';
  }
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
