/**
 * MTProto TCP transports (core.telegram.org/mtproto/mtproto-transports; tdlib td/mtproto/TcpTransport.cpp):
 * framers that turn payloads into a byte stream and a byte stream, fed in arbitrary chunks, back
 * into payloads. The same framers serve inside obfuscated2 (which carries the tag in its header)
 * and on the lab's server side (which reads the client's tag and answers without one).
 *
 *   abridged             EF once; then len/4 in 1 byte (0x01-0x7e) or 7F + len/4 in 3 bytes LE; payload
 *   intermediate         EE EE EE EE once; then len (u32 LE); payload
 *   padded intermediate  DD DD DD DD once; then len (u32 LE, payload + 0-15 random bytes); payload; padding
 *   full                 no tag; len (u32 LE, whole frame) | seq (u32 LE, from 0 per direction) | payload | CRC32
 *
 * Decoders guard the declared length before buffering (`maxFrameSize`) and surface transport
 * errors (a frame holding a negative int32) as their own frame kind.
 */
import { crc32 } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import type { ProbeFailure } from '../failure.js';
import { malformed } from './errors.js';

export type MtprotoTransport = 'abridged' | 'intermediate' | 'padded_intermediate' | 'full';
export const MTPROTO_TRANSPORTS: readonly MtprotoTransport[] = ['abridged', 'intermediate', 'padded_intermediate', 'full'];

/** Source of random bytes; injectable so that tests are deterministic. */
export type RandomSource = (length: number) => Uint8Array;
export const secureRandom: RandomSource = (length) => randomBytes(length);

/** The bytes a client sends once before its first frame (core.telegram.org/mtproto/mtproto-transports). */
export const TRANSPORT_TAG: Readonly<Record<MtprotoTransport, Uint8Array>> = {
  abridged: Uint8Array.of(0xef),
  intermediate: Uint8Array.of(0xee, 0xee, 0xee, 0xee),
  padded_intermediate: Uint8Array.of(0xdd, 0xdd, 0xdd, 0xdd),
  full: new Uint8Array(0),
};

/**
 * Default cap on one frame's payload. A resPQ is about 100 bytes and a req_pq_multi 40; 64 KiB
 * leaves room for padding and anything a DC might send first while keeping a hostile length from
 * making us buffer megabytes. (tdlib's own cap for a whole session is 4 MiB + 1 KiB:
 * td/mtproto/RawConnection.cpp, MAX_PACKET_SIZE.)
 */
export const DEFAULT_MAX_FRAME_SIZE = 1 << 16;

/** Abridged: a first byte below 0x7f is len/4; 0x7f announces a 3-byte length (mtproto-transports, "Abridged"). */
const ABRIDGED_EXTENDED = 0x7f;
/** Abridged: the top bit of the length byte asks for (client) or marks (server) a quick ack (mtproto-transports, "Quick ack"). */
const ABRIDGED_QUICK_ACK_BIT = 0x80;
/** Full: len (4) + seq (4) + CRC32 (4) around the payload (mtproto-transports, "Full"). */
const FULL_OVERHEAD = 12;
/** Padded intermediate: 0-15 random bytes after the payload (mtproto-transports, "Padded intermediate"; tdlib TcpTransport.cpp). */
const MAX_PADDING = 15;
/**
 * tdlib reads any message shorter than 16 bytes as a transport error code in its first int32
 * (td/mtproto/Transport.cpp, Transport::read), which also covers the padded transport where the
 * 4-byte code arrives with up to 15 bytes of padding.
 */
const SHORT_MESSAGE_LIMIT = 16;

/** A frame's payload as the transport delivered it (padding included for the padded transport). */
export type TransportFrame =
  | { kind: 'message'; payload: Uint8Array }
  /** `framed: false` when the code came where a length was expected (seen on the full transport: Telethon issue 4042). */
  | { kind: 'transport_error'; code: number; framed: boolean };

/**
 * The transport error code carried by a payload, or null. Documented codes (-404, -429, -444)
 * arrive as a frame holding just the negative int32 LE (mtproto-transports, "Transport errors");
 * like tdlib, any payload under 16 bytes starting with a negative int32 is read as one.
 */
export function transportErrorCode(payload: Uint8Array): number | null {
  if (payload.length < 4 || payload.length >= SHORT_MESSAGE_LIMIT) return null;
  const code = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).readInt32LE(0);
  return code < 0 ? code : null;
}

/** The 4-byte payload of a transport error, for the lab's fake DC (frame it with the transport's encoder). */
export function transportErrorPayload(code: number): Uint8Array {
  if (!Number.isInteger(code) || code >= 0 || code < -(2 ** 31)) throw new RangeError(`transport error code must be a negative int32: ${code}`);
  const b = Buffer.alloc(4);
  b.writeInt32LE(code);
  return b;
}

/**
 * Where a length was expected, a negative int32 that looks like a negated HTTP-style status
 * (every documented code does: -404, -429, -444) is an unframed transport error. Anything else
 * with the top bit set is a malformed length (quick acks exist only for encrypted messages, which
 * callprobe never sends).
 */
function unframedErrorCode(value: number): number | null {
  return value <= -100 && value >= -999 ? value : null;
}

// ---------------------------------------------------------------------------------------------
// Encoders

export interface FrameEncoder {
  readonly transport: MtprotoTransport;
  /** Frames one payload; the first call also emits the tag unless the encoder was made without it. */
  encode(payload: Uint8Array): Uint8Array;
}

export interface FrameEncoderOptions {
  /** Emit the transport tag before the first frame (the client side over plain TCP). Default true. */
  sendTag?: boolean;
  /** Random source for the padded transport's padding. */
  random?: RandomSource;
}

export function createFrameEncoder(transport: MtprotoTransport, options: FrameEncoderOptions = {}): FrameEncoder {
  const random = options.random ?? secureRandom;
  let tagPending = options.sendTag ?? true;
  let seq = 0;
  const frame = (payload: Uint8Array): Uint8Array => {
    switch (transport) {
      case 'abridged':
        return frameAbridged(payload);
      case 'intermediate':
        return Buffer.concat([u32(payload.length), payload]);
      case 'padded_intermediate': {
        const padLength = (random(1)[0] ?? 0) & MAX_PADDING;
        const padding = padLength > 0 ? random(padLength).subarray(0, padLength) : new Uint8Array(0);
        return Buffer.concat([u32(payload.length + padding.length), payload, padding]);
      }
      case 'full': {
        const head = Buffer.concat([u32(payload.length + FULL_OVERHEAD), u32(seq), payload]);
        seq = (seq + 1) >>> 0;
        return Buffer.concat([head, u32(crc32(head))]);
      }
    }
  };
  return {
    transport,
    encode(payload) {
      if (payload.length === 0) throw new RangeError('an MTProto frame is never empty');
      const out = frame(payload);
      if (!tagPending) return out;
      tagPending = false;
      return Buffer.concat([TRANSPORT_TAG[transport], out]);
    },
  };
}

function frameAbridged(payload: Uint8Array): Uint8Array {
  if (payload.length % 4 !== 0) throw new RangeError(`abridged payloads are whole 32-bit words, got ${payload.length} bytes`);
  const words = payload.length / 4;
  if (words < ABRIDGED_EXTENDED) return Buffer.concat([Uint8Array.of(words), payload]);
  if (words >= 1 << 24) throw new RangeError(`abridged payload too long: ${payload.length} bytes`);
  return Buffer.concat([Uint8Array.of(ABRIDGED_EXTENDED, words & 0xff, (words >> 8) & 0xff, (words >> 16) & 0xff), payload]);
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Decoders

export interface FrameDecoder {
  readonly transport: MtprotoTransport;
  /** Feeds bytes as they arrive; returns the frames they complete. Throws proto_malformed (and again on every later call). */
  push(chunk: Uint8Array): TransportFrame[];
  /** Bytes held while waiting for the rest of a frame. */
  readonly bufferedBytes: number;
  /** True after an unframed transport error: the stream has no frame boundaries left, later bytes are ignored. */
  readonly closed: boolean;
}

export interface FrameDecoderOptions {
  /** Largest payload accepted, checked against the declared length before buffering. */
  maxFrameSize?: number;
  /** The stream starts with the client's tag (the server side over plain TCP); it is checked and dropped. */
  expectTag?: boolean;
}

type Step = { frame: TransportFrame; consumed: number } | null;

export function createFrameDecoder(transport: MtprotoTransport, options: FrameDecoderOptions = {}): FrameDecoder {
  const maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
  let tagPending = (options.expectTag ?? false) && TRANSPORT_TAG[transport].length > 0;
  let pending: Buffer = Buffer.alloc(0);
  let failure: ProbeFailure | null = null;
  let closed = false;
  let expectedSeq = 0;

  const guard = (length: number): void => {
    if (length > maxFrameSize) {
      throw malformed(`${transport}: frame of ${length} bytes exceeds the ${maxFrameSize}-byte limit`, {
        transport,
        declaredFrameLength: length,
      });
    }
  };
  const message = (buf: Buffer, start: number, end: number): Step => {
    const payload = Uint8Array.prototype.slice.call(buf, start, end);
    const code = transportErrorCode(payload);
    const frame: TransportFrame = code === null ? { kind: 'message', payload } : { kind: 'transport_error', code, framed: true };
    return { frame, consumed: end + (transport === 'full' ? 4 : 0) };
  };
  const unframed = (code: number): Step => ({ frame: { kind: 'transport_error', code, framed: false }, consumed: 4 });

  const nextAbridged = (buf: Buffer): Step => {
    const first = buf[0];
    if (first === undefined) return null;
    if (first & ABRIDGED_QUICK_ACK_BIT) {
      throw malformed('abridged: length byte has the quick-ack bit, and callprobe never asks for quick acks', {
        transport,
        firstByte: first,
      });
    }
    let header = 1;
    let words = first;
    if (first === ABRIDGED_EXTENDED) {
      if (buf.length < 4) return null;
      header = 4;
      words = buf.readUIntLE(1, 3);
    }
    if (words === 0) throw malformed('abridged: empty frame', { transport });
    guard(words * 4);
    const end = header + words * 4;
    return buf.length < end ? null : message(buf, header, end);
  };

  const nextIntermediate = (buf: Buffer): Step => {
    if (buf.length < 4) return null;
    const length = buf.readUInt32LE(0);
    if (length >= 0x8000_0000) {
      const code = unframedErrorCode(buf.readInt32LE(0));
      if (code !== null) return unframed(code);
    }
    if (length === 0) throw malformed(`${transport}: empty frame`, { transport });
    guard(length);
    return buf.length < 4 + length ? null : message(buf, 4, 4 + length);
  };

  const nextFull = (buf: Buffer): Step => {
    if (buf.length < 4) return null;
    const signedLength = buf.readInt32LE(0);
    if (signedLength < 0) {
      // Telethon issue 4042 (and gramjs TCPFull.js): the DC sent -429 as the length, seq and body.
      const code = unframedErrorCode(signedLength);
      if (code !== null) return unframed(code);
    }
    const length = buf.readUInt32LE(0);
    if (length < FULL_OVERHEAD) throw malformed(`full: frame length ${length} is below the 12-byte overhead`, { transport, declaredFrameLength: length });
    guard(length - FULL_OVERHEAD);
    if (buf.length < length) return null;
    const seq = buf.readUInt32LE(4);
    if (seq !== expectedSeq) throw malformed(`full: sequence number ${seq}, expected ${expectedSeq}`, { transport, seq, expectedSeq });
    const declaredCrc = buf.readUInt32LE(length - 4);
    const actualCrc = crc32(buf.subarray(0, length - 4));
    if (declaredCrc !== actualCrc) {
      throw malformed('full: CRC32 mismatch', { transport, declaredCrc, actualCrc });
    }
    expectedSeq = (expectedSeq + 1) >>> 0;
    return message(buf, 8, length - 4);
  };

  const next = transport === 'abridged' ? nextAbridged : transport === 'full' ? nextFull : nextIntermediate;

  return {
    transport,
    get bufferedBytes() {
      return pending.length;
    },
    get closed() {
      return closed;
    },
    push(chunk) {
      if (failure) throw failure;
      if (closed || chunk.length === 0) return [];
      pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, chunk]);
      const frames: TransportFrame[] = [];
      try {
        if (tagPending) {
          const tag = TRANSPORT_TAG[transport];
          if (pending.length < tag.length) return frames;
          if (!pending.subarray(0, tag.length).equals(tag)) {
            throw malformed(`${transport}: stream does not start with the transport tag`, {
              transport,
              firstBytesHex: pending.subarray(0, tag.length).toString('hex'),
            });
          }
          pending = pending.subarray(tag.length);
          tagPending = false;
        }
        for (;;) {
          const step = next(pending);
          if (step === null) break;
          frames.push(step.frame);
          pending = pending.subarray(step.consumed);
          if (step.frame.kind === 'transport_error' && !step.frame.framed) {
            closed = true;
            pending = Buffer.alloc(0);
            break;
          }
        }
        return frames;
      } catch (err) {
        failure = err as ProbeFailure;
        pending = Buffer.alloc(0);
        throw err;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Server side: which transport a client chose

export type ClientTransportGuess = MtprotoTransport | 'obfuscated2' | 'http' | 'tls' | 'need_more';

/**
 * What a client's first bytes say about its transport, as a DC tells them apart (the reason for
 * obfuscated2's forbidden first words, tdlib td/mtproto/TcpTransport.cpp ObfuscatedTransport::init):
 * EF is abridged, EEEEEEEE intermediate, DDDDDDDD padded intermediate, HTTP verbs are HTTP,
 * 16 03 01 02 is a TLS record (MTProxy's fake TLS), a zero second word is the full transport's
 * first seq, and anything else is an obfuscated2 header.
 */
export function detectClientTransport(firstBytes: Uint8Array): ClientTransportGuess {
  const b = Buffer.from(firstBytes.buffer, firstBytes.byteOffset, firstBytes.byteLength);
  if (b.length >= 1 && b[0] === 0xef) return 'abridged';
  if (b.length < 4) return 'need_more';
  const first = b.readUInt32LE(0);
  if (first === 0xeeeeeeee) return 'intermediate';
  if (first === 0xdddddddd) return 'padded_intermediate';
  if (HTTP_FIRST_WORDS.has(first)) return 'http';
  if (first === TLS_FIRST_WORD) return 'tls';
  if (b.length < 8) return 'need_more';
  return b.readUInt32LE(4) === 0 ? 'full' : 'obfuscated2';
}

/** "HEAD", "POST", "GET ", "OPTI" as little-endian words (tdlib TcpTransport.cpp). */
export const HTTP_FIRST_WORDS: ReadonlySet<number> = new Set([0x44414548, 0x54534f50, 0x20544547, 0x4954504f]);
/** 16 03 01 02: a TLS handshake record, as MTProxy's fake-TLS mode starts (tdlib TcpTransport.cpp). */
export const TLS_FIRST_WORD = 0x02010316;
