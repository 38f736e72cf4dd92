/**
 * WhatsApp's transport framing: a connection header sent once by the client, then frames of a
 * 3-byte big-endian length followed by that many bytes, in both directions (whatsmeow
 * `socket/framesocket.go` and `socket/constants.go`: FrameLengthSize = 3, FrameMaxSize = 1 << 24;
 * Baileys `src/Utils/noise-handler.ts` processData). The same bytes travel over TCP and inside
 * WebSocket binary messages, which need not align with frames: the decoder takes any chunks.
 */
import { malformed } from './errors.js';

/** whatsmeow socket/constants.go FrameLengthSize. */
export const FRAME_LENGTH_BYTES = 3;
/** The largest length 3 bytes can declare (whatsmeow FrameMaxSize = 1 << 24 is its exclusive bound). */
export const PROTOCOL_MAX_FRAME_SIZE = 0xff_ffff;
/**
 * The probe's default limit. A ServerHello is well under 1 KiB (32-byte ephemeral, 48-byte
 * encrypted static, a two-certificate chain of about 300 bytes), so 64 KiB is generous while
 * keeping what a hostile peer can make us buffer small.
 */
export const DEFAULT_MAX_FRAME_SIZE = 64 * 1024;

/**
 * The connection header: 'W' 'A', a magic byte and the binary-XML dictionary version (whatsmeow
 * socket/constants.go WAConnHeader = {'W','A', WAMagicValue 6, token.DictVersion 3}; Baileys
 * Defaults NOISE_WA_HEADER). Magic and version come from the catalogue, so a bump is a data change.
 */
export const WA_HEADER_LENGTH = 4;
export function connectionHeader(magic: number, dictionaryVersion: number): Uint8Array {
  for (const [name, v] of [['magic', magic], ['dictionaryVersion', dictionaryVersion]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`${name} must be a byte, got ${v}`);
  }
  return Uint8Array.of(0x57, 0x41, magic, dictionaryVersion); // 'W' 'A'
}

/** Frames `payload`. A payload over the limit is a bug in the caller, hence a RangeError. */
export function encodeFrame(payload: Uint8Array, maxFrameSize = PROTOCOL_MAX_FRAME_SIZE): Uint8Array {
  if (payload.length > Math.min(maxFrameSize, PROTOCOL_MAX_FRAME_SIZE)) {
    throw new RangeError(`frame of ${payload.length} bytes exceeds the maximum of ${maxFrameSize}`);
  }
  const out = new Uint8Array(FRAME_LENGTH_BYTES + payload.length);
  out[0] = (payload.length >>> 16) & 0xff;
  out[1] = (payload.length >>> 8) & 0xff;
  out[2] = payload.length & 0xff;
  out.set(payload, FRAME_LENGTH_BYTES);
  return out;
}

export interface FrameDecoderOptions {
  /** Frames declaring more than this are `proto_malformed` as soon as their length is read. */
  maxFrameSize?: number;
  /**
   * Bytes to take, once, before the first frame: WA_HEADER_LENGTH on the server side (the client's
   * connection header), 0 on the client side (the server sends frames only).
   */
  headerLength?: number;
}

/**
 * Streaming decoder: feed it chunks as they arrive; it returns each complete frame once. Memory
 * stays bounded by the limit: a declared length above it fails as soon as its 3 bytes are in,
 * before any of its body is buffered (if the same chunk completed earlier frames, those are
 * returned first and the failure comes with the next call). After a failure the decoder stays
 * failed, so a caller cannot read past bad framing.
 */
export class FrameDecoder {
  readonly maxFrameSize: number;
  private readonly headerLength: number;
  private headerBytes: Uint8Array | null = null;
  private pending: Uint8Array = new Uint8Array(0);
  private failure: Error | null = null;
  private received = 0;

  constructor(options: FrameDecoderOptions = {}) {
    const max = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    if (!Number.isInteger(max) || max < 0 || max > PROTOCOL_MAX_FRAME_SIZE) {
      throw new RangeError(`maxFrameSize must be 0..${PROTOCOL_MAX_FRAME_SIZE}, got ${max}`);
    }
    this.maxFrameSize = max;
    this.headerLength = options.headerLength ?? 0;
  }

  /** The connection header, once `headerLength` bytes have arrived (null before, or if none is expected). */
  get header(): Uint8Array | null {
    return this.headerBytes;
  }

  /** Bytes held that do not yet form a whole frame. */
  get bufferedBytes(): number {
    return this.pending.length;
  }

  /** Total bytes fed so far. */
  get bytesReceived(): number {
    return this.received;
  }

  /** Adds a chunk and returns the frames (payloads, without length) it completed. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failure) throw this.failure;
    this.received += chunk.length;
    const data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let offset = 0;
    if (this.headerBytes === null && this.headerLength > 0) {
      if (data.length < this.headerLength) {
        this.pending = Uint8Array.from(data);
        return [];
      }
      this.headerBytes = Uint8Array.from(data.subarray(0, this.headerLength));
      offset = this.headerLength;
    }
    const frames: Uint8Array[] = [];
    while (data.length - offset >= FRAME_LENGTH_BYTES) {
      const length = (data[offset]! << 16) | (data[offset + 1]! << 8) | data[offset + 2]!;
      if (length > this.maxFrameSize) {
        this.failure = malformed(`frame declares ${length} bytes, above the limit of ${this.maxFrameSize}`, {
          declaredLength: length,
          maxFrameSize: this.maxFrameSize,
          lengthHex: Buffer.from(data.subarray(offset, offset + FRAME_LENGTH_BYTES)).toString('hex'),
        });
        this.pending = new Uint8Array(0);
        // Frames completed before the bad length are good: hand them over, fail on the next call.
        if (frames.length > 0) return frames;
        throw this.failure;
      }
      if (data.length - offset - FRAME_LENGTH_BYTES < length) break;
      const start = offset + FRAME_LENGTH_BYTES;
      frames.push(Uint8Array.from(data.subarray(start, start + length)));
      offset = start + length;
    }
    // Copy the remainder so a caller's chunk buffer is never retained or aliased.
    this.pending = Uint8Array.from(data.subarray(offset));
    return frames;
  }

  /**
   * Called when the stream ends: a partial header or frame left over is `proto_malformed`
   * (truncated). The transport's own end (EOF, reset) is classified by the phase, not here.
   */
  end(): void {
    if (this.failure) throw this.failure;
    if (this.headerLength > 0 && this.headerBytes === null && this.pending.length > 0) {
      throw malformed(`stream ended inside the ${this.headerLength}-byte connection header`, {
        bufferedBytes: this.pending.length,
      });
    }
    if (this.pending.length > 0) {
      const evidence: Record<string, unknown> = { bufferedBytes: this.pending.length };
      if (this.pending.length >= FRAME_LENGTH_BYTES) {
        evidence.declaredLength = (this.pending[0]! << 16) | (this.pending[1]! << 8) | this.pending[2]!;
      }
      throw malformed('stream ended inside a frame (truncated)', evidence);
    }
  }
}
