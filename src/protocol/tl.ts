/**
 * The few TL (Type Language) primitives that MTProto's first key-exchange step needs:
 * int (int32), long (int64), int128, string/bytes with their length prefix and padding,
 * and a boxed Vector<long>. Everything is little-endian (core.telegram.org/mtproto/serialize).
 *
 * The reader is the defence line against hostile bytes: every read is bounds-checked before
 * anything is sliced or allocated, and a short or inconsistent input raises `proto_malformed`,
 * never a RangeError.
 */
import { malformed } from './errors.js';

/** Constructor ids, as written in the TL schema (tdlib `td/generate/scheme/mtproto_api.tl`, gramjs `gramjs/tl/static/schema.tl`). */
export const TL_CONSTRUCTOR = {
  /** req_pq_multi#be7e8ef1 nonce:int128 = ResPQ */
  reqPqMulti: 0xbe7e8ef1,
  /** resPQ#05162463 nonce:int128 server_nonce:int128 pq:string server_public_key_fingerprints:Vector<long> = ResPQ */
  resPQ: 0x05162463,
  /** vector#1cb5c415 {t:Type} # [ t ] = Vector t (core.telegram.org/mtproto/serialize, "Vector") */
  vector: 0x1cb5c415,
} as const;

/**
 * A TL string whose first byte is 254 carries a 3-byte length (core.telegram.org/mtproto/serialize,
 * "bytes"); below it the first byte is the length itself.
 */
const LONG_STRING_MARKER = 254;
/** The 3-byte length of a long TL string cannot reach 2^24. */
const MAX_TL_BYTES_LENGTH = 0xff_ffff;

/** Hex of a 32-bit constructor id as the TL schema writes it (`be7e8ef1`). */
export function constructorHex(id: number): string {
  return (id >>> 0).toString(16).padStart(8, '0');
}

/** Serialises TL values into one buffer. Arguments are ours, so misuse throws RangeError (a bug, not hostile input). */
export class TlWriter {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  get length(): number {
    return this.size;
  }

  raw(bytes: Uint8Array): this {
    this.parts.push(bytes);
    this.size += bytes.length;
    return this;
  }

  int32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(value);
    return this.raw(b);
  }

  uint32(value: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value >>> 0);
    return this.raw(b);
  }

  /** A TL `long`; accepts the signed or the unsigned form of the same 64 bits. */
  int64(value: bigint): this {
    if (value < -(1n << 63n) || value >= 1n << 64n) throw new RangeError(`int64 out of range: ${value}`);
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt.asIntN(64, value));
    return this.raw(b);
  }

  /** A TL `int128` is 16 opaque bytes (nonces), written as given. */
  int128(value: Uint8Array): this {
    if (value.length !== 16) throw new RangeError(`int128 needs 16 bytes, got ${value.length}`);
    return this.raw(Uint8Array.from(value));
  }

  /** TL `bytes`/`string`: length prefix, data, zero padding to a multiple of 4 (core.telegram.org/mtproto/serialize). */
  bytes(value: Uint8Array): this {
    const n = value.length;
    if (n > MAX_TL_BYTES_LENGTH) throw new RangeError(`TL bytes too long: ${n}`);
    const header = n < LONG_STRING_MARKER ? Uint8Array.of(n) : Uint8Array.of(LONG_STRING_MARKER, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff);
    const unpadded = header.length + n;
    const out = new Uint8Array(unpadded + ((4 - (unpadded % 4)) % 4));
    out.set(header, 0);
    out.set(value, header.length);
    return this.raw(out);
  }

  /** A boxed Vector<long>: the vector constructor, a count, then the values. */
  vectorLong(values: readonly bigint[]): this {
    this.uint32(TL_CONSTRUCTOR.vector).int32(values.length);
    for (const v of values) this.int64(v);
    return this;
  }

  finish(): Uint8Array {
    return Buffer.concat(this.parts, this.size);
  }
}

/** Reads TL values from bytes that may be hostile: every read checks its bounds first. */
export class TlReader {
  private readonly view: Buffer;
  private pos: number;

  constructor(bytes: Uint8Array, offset = 0) {
    this.view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = offset;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.view.length - this.pos;
  }

  /** Throws proto_malformed unless `n` more bytes are there for `field`. */
  need(n: number, field: string): void {
    if (n > this.remaining) {
      throw malformed(`TL: ${field} needs ${n} bytes at offset ${this.pos}, only ${this.remaining} left`, {
        tlField: field,
        tlOffset: this.pos,
      });
    }
  }

  raw(n: number, field = 'raw'): Uint8Array {
    this.need(n, field);
    const out = Uint8Array.prototype.slice.call(this.view, this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  int32(field = 'int'): number {
    this.need(4, field);
    const v = this.view.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  uint32(field = 'int'): number {
    this.need(4, field);
    const v = this.view.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A TL `long` as a signed 64-bit bigint (TL longs are signed). */
  int64(field = 'long'): bigint {
    this.need(8, field);
    const v = this.view.readBigInt64LE(this.pos);
    this.pos += 8;
    return v;
  }

  int128(field = 'int128'): Uint8Array {
    return this.raw(16, field);
  }

  /** Reads a TL constructor id and checks it is the expected one. */
  expectConstructor(expected: number, field: string): void {
    const at = this.pos;
    const got = this.uint32(field);
    if (got !== expected >>> 0) {
      throw malformed(`TL: ${field} has constructor ${constructorHex(got)}, expected ${constructorHex(expected)}`, {
        tlField: field,
        tlOffset: at,
        constructor: constructorHex(got),
      });
    }
  }

  /** TL `bytes`/`string`. The declared length is checked against what is left before anything is sliced. */
  bytes(field = 'bytes'): Uint8Array {
    const at = this.pos;
    this.need(1, field);
    const first = this.view[this.pos] as number;
    let headerLength: number;
    let length: number;
    if (first < LONG_STRING_MARKER) {
      headerLength = 1;
      length = first;
    } else if (first === LONG_STRING_MARKER) {
      this.need(4, field);
      headerLength = 4;
      length = this.view.readUIntLE(this.pos + 1, 3);
    } else {
      // tdlib reads 255 as the prefix of a 7-byte length, for strings of 2^24 bytes and more
      // (tdutils/td/utils/tl_parsers.h); nothing that long fits in a frame callprobe accepts.
      throw malformed(`TL: ${field} starts with 0xff (a string of 16 MiB or more)`, { tlField: field, tlOffset: at });
    }
    const unpadded = headerLength + length;
    const total = unpadded + ((4 - (unpadded % 4)) % 4);
    this.need(total, field);
    const out = Uint8Array.prototype.slice.call(this.view, this.pos + headerLength, this.pos + headerLength + length);
    this.pos += total;
    return out;
  }

  /** A boxed Vector<long>. The count is checked against the bytes left before the array is built. */
  vectorLong(field = 'Vector<long>'): bigint[] {
    this.expectConstructor(TL_CONSTRUCTOR.vector, field);
    const at = this.pos;
    const count = this.int32(field);
    if (count < 0 || count * 8 > this.remaining) {
      throw malformed(`TL: ${field} declares ${count} longs, ${this.remaining} bytes left`, {
        tlField: field,
        tlOffset: at,
        declaredCount: count,
      });
    }
    const out: bigint[] = [];
    for (let i = 0; i < count; i++) out.push(this.int64(field));
    return out;
  }
}
