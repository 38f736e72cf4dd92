/**
 * A small protobuf wire codec (https://protobuf.dev/programming-guides/encoding/), just enough for
 * WhatsApp's handshake messages (waproto.ts): varints and length-delimited fields, with fixed32 and
 * fixed64 recognised so that unknown fields of those types are skipped.
 *
 * Why not protobufjs: the handshake needs five tiny messages of bytes and integers. protobufjs
 * would be a new runtime dependency whose decoders are generated code that throws its own
 * RangeError/Error on hostile input; here every malformed input is a `proto_malformed`
 * ProbeFailure by construction, lengths are checked before any slice (nothing is allocated from
 * a declared length), and length-delimited values are views into the input, so signed bytes
 * (a certificate's `details`) stay exactly as received.
 */
import { malformed } from './errors.js';

/** Wire types (protobuf.dev "Message Structure"). Groups (3, 4) are deprecated and rejected. */
export const WireType = {
  varint: 0,
  fixed64: 1,
  lengthDelimited: 2,
  fixed32: 5,
} as const;
export type WireType = (typeof WireType)[keyof typeof WireType];

/** A varint is at most 10 bytes (64 bits in 7-bit groups). */
const MAX_VARINT_BYTES = 10;
/** Field numbers are 1 .. 2^29 - 1 (protobuf.dev "Assigning Field Numbers"). */
const MAX_FIELD_NUMBER = 2 ** 29 - 1;
const UINT64_MAX = (1n << 64n) - 1n;
const UINT32_MAX = 0xffff_ffff;

export type FieldValue =
  | { wireType: typeof WireType.varint; value: bigint }
  | { wireType: typeof WireType.lengthDelimited; value: Uint8Array }
  | { wireType: typeof WireType.fixed32 | typeof WireType.fixed64; value: Uint8Array };

export interface DecodedVarint {
  value: bigint;
  /** Offset of the first byte after the varint. */
  next: number;
}

export function decodeVarint(bytes: Uint8Array, offset: number): DecodedVarint {
  let value = 0n;
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    const at = offset + i;
    if (at >= bytes.length) throw malformed('protobuf: truncated varint', { offset });
    const byte = bytes[at]!;
    value |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if ((byte & 0x80) === 0) {
      if (value > UINT64_MAX) throw malformed('protobuf: varint exceeds 64 bits', { offset });
      return { value, next: at + 1 };
    }
  }
  throw malformed('protobuf: varint longer than 10 bytes', { offset });
}

export function encodeVarint(value: number | bigint): Uint8Array {
  let v = BigInt(value);
  if (v < 0n || v > UINT64_MAX) throw new RangeError(`protobuf: varint out of range: ${value}`);
  const out: number[] = [];
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v === 0n ? low : low | 0x80);
  } while (v !== 0n);
  return Uint8Array.from(out);
}

/**
 * A decoded message: for each field number, its occurrences in order. Values of length-delimited
 * fields are subarrays of the input (no copy).
 */
export class ProtoMessage {
  constructor(readonly fields: ReadonlyMap<number, readonly FieldValue[]>) {}

  has(field: number): boolean {
    return this.fields.has(field);
  }

  /** A singular field: the last occurrence wins, as protobuf parsers do for non-repeated scalars. */
  private last(field: number): FieldValue | undefined {
    const all = this.fields.get(field);
    return all?.[all.length - 1];
  }

  bytes(field: number, name = `field ${field}`): Uint8Array | undefined {
    const f = this.last(field);
    if (f === undefined) return undefined;
    if (f.wireType !== WireType.lengthDelimited) throw wrongType(name, f.wireType, WireType.lengthDelimited);
    return f.value;
  }

  uint32(field: number, name = `field ${field}`): number | undefined {
    const v = this.varint(field, name);
    if (v === undefined) return undefined;
    if (v > BigInt(UINT32_MAX)) throw malformed(`protobuf: ${name} exceeds uint32`, { field });
    return Number(v);
  }

  /**
   * A uint64 as a JS number. Values above 2^53 - 1 are rejected rather than rounded: the
   * handshake's uint64 fields are Unix times in seconds, where such a value is not a real one.
   */
  uint64(field: number, name = `field ${field}`): number | undefined {
    const v = this.varint(field, name);
    if (v === undefined) return undefined;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed(`protobuf: ${name} exceeds 2^53-1`, { field });
    return Number(v);
  }

  bool(field: number, name = `field ${field}`): boolean | undefined {
    const v = this.varint(field, name);
    return v === undefined ? undefined : v !== 0n;
  }

  private varint(field: number, name: string): bigint | undefined {
    const f = this.last(field);
    if (f === undefined) return undefined;
    if (f.wireType !== WireType.varint) throw wrongType(name, f.wireType, WireType.varint);
    return f.value;
  }
}

function wrongType(name: string, got: number, want: number) {
  return malformed(`protobuf: ${name} has wire type ${got}, expected ${want}`, { wireType: got });
}

/**
 * Parses one message's fields. Unknown fields are kept (and so skipped by the typed readers), so a
 * newer server that adds fields still parses; any structural error is `proto_malformed`.
 */
export function decodeMessage(bytes: Uint8Array): ProtoMessage {
  const fields = new Map<number, FieldValue[]>();
  let offset = 0;
  while (offset < bytes.length) {
    const tagAt = offset;
    const tag = decodeVarint(bytes, offset);
    offset = tag.next;
    if (tag.value > BigInt(UINT32_MAX)) throw malformed('protobuf: tag exceeds 32 bits', { offset: tagAt });
    const fieldNumber = Number(tag.value >> 3n);
    const wireType = Number(tag.value & 7n);
    if (fieldNumber < 1 || fieldNumber > MAX_FIELD_NUMBER) {
      throw malformed(`protobuf: invalid field number ${fieldNumber}`, { offset: tagAt });
    }
    let value: FieldValue;
    switch (wireType) {
      case WireType.varint: {
        const v = decodeVarint(bytes, offset);
        offset = v.next;
        value = { wireType, value: v.value };
        break;
      }
      case WireType.lengthDelimited: {
        const len = decodeVarint(bytes, offset);
        offset = len.next;
        if (len.value > BigInt(bytes.length - offset)) {
          throw malformed('protobuf: length-delimited field runs past the end', {
            offset: tagAt,
            declared: len.value.toString(),
            available: bytes.length - offset,
          });
        }
        const end = offset + Number(len.value);
        value = { wireType, value: bytes.subarray(offset, end) };
        offset = end;
        break;
      }
      case WireType.fixed32:
      case WireType.fixed64: {
        const size = wireType === WireType.fixed32 ? 4 : 8;
        if (offset + size > bytes.length) throw malformed('protobuf: truncated fixed-width field', { offset: tagAt });
        value = { wireType, value: bytes.subarray(offset, offset + size) };
        offset += size;
        break;
      }
      default:
        throw malformed(`protobuf: unsupported wire type ${wireType}`, { offset: tagAt, wireType });
    }
    const list = fields.get(fieldNumber);
    if (list) list.push(value);
    else fields.set(fieldNumber, [value]);
  }
  return new ProtoMessage(fields);
}

/** A field to encode; `undefined` values are omitted, as proto2 optional fields that are unset. */
export type EncodableField =
  | { field: number; bytes: Uint8Array | undefined }
  | { field: number; varint: number | bigint | undefined };

function encodeTag(field: number, wireType: WireType): Uint8Array {
  if (!Number.isInteger(field) || field < 1 || field > MAX_FIELD_NUMBER) {
    throw new RangeError(`protobuf: invalid field number ${field}`);
  }
  return encodeVarint(BigInt(field) * 8n + BigInt(wireType));
}

/** Encodes fields in the order given (callers list them by field number, as protoc does). */
export function encodeMessage(fields: readonly EncodableField[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of fields) {
    if ('bytes' in f) {
      if (f.bytes === undefined) continue;
      parts.push(encodeTag(f.field, WireType.lengthDelimited), encodeVarint(f.bytes.length), f.bytes);
    } else {
      if (f.varint === undefined) continue;
      parts.push(encodeTag(f.field, WireType.varint), encodeVarint(f.varint));
    }
  }
  return Buffer.concat(parts);
}
