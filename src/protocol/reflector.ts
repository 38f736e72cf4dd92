/**
 * What the reflector speaks besides the media packets of src/protocol/media-packet.ts: the
 * framing of media packets over TCP and TLS, and the authenticated request for the TCP stream
 * test ("send me N bytes"). Pure: bytes in, values out; shared by the reflector (src/reflector/) and
 * the `stream` phase.
 *
 * ## Framing over TCP/TLS (RFC 4571 §2)
 * Each packet is preceded by a 16-bit big-endian length, as RTP over connection-oriented
 * transport is framed. The reflector echoes a framed media packet as the same frame.
 *
 * ## The stream request (48 bytes, sent as one RFC 4571 frame)
 *
 *   nonce (16, random) | fields XOR mask (16) | tag (16)
 *   fields = bytes N (u32 BE) | direction (u8) | 11 zero bytes
 *   direction = 0 download (the reflector sends N bytes), 1 upload (the prober sends N bytes and
 *               the reflector acknowledges what arrived), 2 both (both at once, N each way)
 *   tag    = HMAC-SHA256(key, "callprobe stream v1" || nonce || fields)[0..16]
 *   mask   = HMAC-SHA256(key, "callprobe stream mask v1" || tag)[0..16]
 *
 * The same construction as the media trailer (media-packet.ts): every byte on the wire looks
 * random, so no constant identifies callprobe, and only holders of the key can ask for data.
 * The direction sits in what were reserved bytes, which a reflector checks are zero: a request of
 * a prober that predates it is a download, as it was; a reflector that predates it finds an
 * upload request not authentic and ignores it (the prober sees no answer).
 *
 * ## The reply to a download (raw bytes, not framed)
 *
 *   proof (16) = HMAC-SHA256(key, "callprobe stream reply v1" || tag)[0..16], then N bytes
 *
 * The proof shows that the reflector itself answered this request (a middlebox that answers in
 * its place cannot forge it); the N bytes are random, like the ciphertext of a real download.
 * The reflector then sends nothing more and waits for the client to close.
 *
 * ## The reply to an upload or both
 *
 * The same proof, then records (stream-records.ts): the download's data and the acknowledgements
 * of the upload, which the prober sends raw (no framing) once it has the proof.
 *
 * ## The refusal (raw, 16 bytes, then FIN)
 *
 *   refusal (16) = HMAC-SHA256(key, "callprobe stream refusal v1" || tag || reason)[0..16]
 *   reason       = one byte: 1 too_large (N above the reflector's streamMaxBytes),
 *                  2 rate_limited (the source's streamsPerMinute used up)
 *
 * In place of the proof, when the reflector will not send: the prober tells it from the proof
 * and from every other 16 bytes, so a refusal is reported as the reflector's own answer
 * (`proto_error` with the reason), never as a connection the path closed (`eof_error`), and a
 * middlebox can forge neither.
 *
 * ## Limits of the framing
 *
 * The reflector reads frames no longer than MAX_REFLECTOR_FRAME_LENGTH (the largest media packet;
 * the stream request is shorter): a longer length header is not a callprobe peer, and the
 * reflector closes the connection rather than buffer up to 64 KiB for it.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { MAX_MEDIA_PACKET_LENGTH } from './media-packet.js';
import { SEALED_FIELDS_LENGTH, SEALED_LENGTH, hmac16, seal, unseal, type SealLabels } from './sealed.js';

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

/**
 * Cuts a TCP byte stream into RFC 4571 frames of at most `maxFrameLength` bytes. A frame inside
 * one chunk is handed out as a view of it (no copy); a frame split across chunks is assembled in
 * a buffer of its own length, allocated once its length header is read, each byte copied once.
 * So a peer dripping a byte at a time costs linear work, and the reader holds at most one
 * partial frame (and no chunk) between calls.
 */
export class FrameReader {
  /** A length header split across chunks. */
  private readonly head = Buffer.alloc(FRAME_HEADER_LENGTH);
  private headFilled = 0;
  /** The frame being assembled across chunks, and how much of it has arrived. */
  private body: Buffer | null = null;
  private bodyFilled = 0;
  /** The first length header above the limit, once seen; the reader then takes no more bytes. */
  oversized: number | null = null;
  /** `take`'s callback said stop: what follows is not framed. */
  private done = false;

  constructor(private readonly maxFrameLength: number = MAX_FRAME_LENGTH) {}

  /** Returns the frames completed by `chunk`, in order (none once `oversized` is set). */
  push(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    this.take(chunk, (frame) => void frames.push(frame));
    return frames;
  }

  /**
   * Hands the frames completed by `chunk` to `onFrame` in order, until it returns false: then the
   * rest of the chunk, which is no frame (a stream test's upload follows its request raw), is
   * returned, and the reader takes no more. Returns null when the whole chunk was read as frames.
   */
  take(chunk: Buffer, onFrame: (frame: Buffer) => boolean | void): Buffer | null {
    let at = 0;
    const hand = (frame: Buffer): boolean => {
      if (onFrame(frame) !== false) return true;
      this.done = true;
      return false;
    };
    while (this.oversized === null && !this.done && at < chunk.length) {
      if (this.body) {
        const n = Math.min(this.body.length - this.bodyFilled, chunk.length - at);
        chunk.copy(this.body, this.bodyFilled, at, at + n);
        this.bodyFilled += n;
        at += n;
        if (this.bodyFilled === this.body.length) {
          const frame = this.body;
          this.body = null;
          if (!hand(frame)) break;
        }
        continue;
      }
      let length: number;
      if (this.headFilled === 0 && chunk.length - at >= FRAME_HEADER_LENGTH) {
        length = chunk.readUInt16BE(at);
        at += FRAME_HEADER_LENGTH;
      } else {
        this.head[this.headFilled++] = chunk[at++] as number;
        if (this.headFilled < FRAME_HEADER_LENGTH) continue;
        this.headFilled = 0;
        length = this.head.readUInt16BE(0);
      }
      if (length > this.maxFrameLength) {
        this.oversized = length;
      } else if (chunk.length - at >= length) {
        const frame = chunk.subarray(at, at + length);
        at += length;
        if (!hand(frame)) break;
      } else {
        this.body = Buffer.allocUnsafe(length);
        this.bodyFilled = 0;
      }
    }
    return this.done ? chunk.subarray(at) : null;
  }
}

const NONCE_LENGTH = 16;
const FIELDS_LENGTH = SEALED_FIELDS_LENGTH;
/** Where the direction sits in the fields (after the u32 byte count). */
const DIRECTION_OFFSET = 4;
export const STREAM_REQUEST_LENGTH = NONCE_LENGTH + SEALED_LENGTH;
export const STREAM_PROOF_LENGTH = 16;
/** u32: the largest request the format can carry; the reflector's config caps it far lower. */
export const MAX_STREAM_BYTES = 0xffffffff;
/**
 * The largest stream test a reflector serves by default (its `limits.streamMaxBytes`), and so the
 * most the `stream` phase asks for: 4 MiB is 200 times the 15-20 KB after which the freezes seen
 * in 2024-2025 stop data, and about 3 s at 10 Mbit/s.
 */
export const DEFAULT_STREAM_MAX_BYTES = 4 * 1024 * 1024;
const REQUEST: SealLabels = { tag: Buffer.from('callprobe stream v1'), mask: Buffer.from('callprobe stream mask v1') };
const REPLY_LABEL = Buffer.from('callprobe stream reply v1');
const REFUSAL_LABEL = Buffer.from('callprobe stream refusal v1');

/** The largest frame a callprobe peer sends the reflector: a media packet (the stream request is 48 bytes). */
export const MAX_REFLECTOR_FRAME_LENGTH = Math.max(MAX_MEDIA_PACKET_LENGTH, STREAM_REQUEST_LENGTH);

/** Which way the stream test's bytes go, with the byte that stands for it in the request. */
export const STREAM_DIRECTIONS = { download: 0, upload: 1, both: 2 } as const;
export type StreamDirection = keyof typeof STREAM_DIRECTIONS;
const DIRECTION_BY_BYTE: ReadonlyMap<number, StreamDirection> = new Map(
  (Object.entries(STREAM_DIRECTIONS) as Array<[StreamDirection, number]>).map(([name, byte]) => [byte, name]),
);

/** Whether the prober sends (upload, both) and whether the reflector sends data (download, both). */
export const uploads = (d: StreamDirection): boolean => d !== 'download';
export const downloads = (d: StreamDirection): boolean => d !== 'upload';

/** Why the reflector refused a stream request, with the byte that stands for it in the refusal. */
export const STREAM_REFUSAL_REASONS = { too_large: 1, rate_limited: 2 } as const;
export type StreamRefusalReason = keyof typeof STREAM_REFUSAL_REASONS;
const REFUSAL_REASON_NAMES = Object.keys(STREAM_REFUSAL_REASONS) as StreamRefusalReason[];

export interface StreamRequest {
  /** The 48 bytes to send (unframed). */
  readonly bytes: Buffer;
  readonly direction: StreamDirection;
  /** The request's tag: the reply's records and acknowledgements are keyed by it (stream-records.ts). */
  readonly tag: Buffer;
  /** The proof the reply must start with. */
  readonly proof: Buffer;
  /** What the reply starts with instead when the reflector refuses, by reason. */
  readonly refusals: Readonly<Record<StreamRefusalReason, Buffer>>;
}

/** An authentic request as the reflector sees it. */
export interface VerifiedStreamRequest {
  readonly bytesRequested: number;
  readonly direction: StreamDirection;
  readonly tag: Buffer;
  readonly proof: Buffer;
  readonly refusals: Readonly<Record<StreamRefusalReason, Buffer>>;
}

function refusalsFor(key: Uint8Array, tag: Uint8Array): Record<StreamRefusalReason, Buffer> {
  const out = {} as Record<StreamRefusalReason, Buffer>;
  for (const r of REFUSAL_REASON_NAMES) out[r] = hmac16(key, REFUSAL_LABEL, tag, Uint8Array.of(STREAM_REFUSAL_REASONS[r]));
  return out;
}

/** The refusal reason these 16 bytes stand for, or null if they are no refusal of this request. */
export function refusalReason(head: Uint8Array, request: Pick<StreamRequest, 'refusals'>): StreamRefusalReason | null {
  if (head.length !== STREAM_PROOF_LENGTH) return null;
  for (const r of REFUSAL_REASON_NAMES) if (timingSafeEqual(request.refusals[r], head)) return r;
  return null;
}

export function encodeStreamRequest(
  bytesRequested: number,
  key: Uint8Array,
  opts: { direction?: StreamDirection; nonce?: Uint8Array } = {},
): StreamRequest {
  if (!Number.isInteger(bytesRequested) || bytesRequested < 0 || bytesRequested > MAX_STREAM_BYTES) {
    throw new RangeError(`stream bytes out of range: ${bytesRequested}`);
  }
  const direction = opts.direction ?? 'download';
  const nonce = opts.nonce ?? randomBytes(NONCE_LENGTH);
  if (nonce.length !== NONCE_LENGTH) throw new RangeError(`nonce must be ${NONCE_LENGTH} bytes`);
  const fields = Buffer.alloc(FIELDS_LENGTH);
  fields.writeUInt32BE(bytesRequested, 0);
  fields[DIRECTION_OFFSET] = STREAM_DIRECTIONS[direction];
  const { wire, tag } = seal(key, REQUEST, nonce, fields);
  return { bytes: Buffer.concat([nonce, wire]), direction, tag, proof: hmac16(key, REPLY_LABEL, tag), refusals: refusalsFor(key, tag) };
}

/** The requested byte count, direction and the reply's proof, or null if this is not an authentic request. */
export function verifyStreamRequest(input: Uint8Array, key: Uint8Array): VerifiedStreamRequest | null {
  if (input.length !== STREAM_REQUEST_LENGTH) return null;
  const opened = unseal(key, REQUEST, input.subarray(0, NONCE_LENGTH), input.subarray(NONCE_LENGTH));
  if (!opened) return null;
  const { fields, tag } = opened;
  const direction = DIRECTION_BY_BYTE.get(fields[DIRECTION_OFFSET] as number);
  // Reserved bytes must be zero, and the direction one we know: a later version may give them a meaning.
  if (direction === undefined || fields.subarray(DIRECTION_OFFSET + 1).some((b) => b !== 0)) return null;
  return { bytesRequested: fields.readUInt32BE(0), direction, tag, proof: hmac16(key, REPLY_LABEL, tag), refusals: refusalsFor(key, tag) };
}
