import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import { decodeMessage, decodeVarint, encodeMessage, encodeVarint, WireType } from '../../src/protocol/protobuf.js';
import { failureOf, fromHexUint8, fuzzBytes, toHex } from '../helpers/bytes.js';

describe('varint', () => {
  // Vectors from protobuf.dev "Encoding": 1 -> 01, 150 -> 96 01; 300 -> ac 02 (Base 128 Varints).
  it.each([
    [0, '00'],
    [1, '01'],
    [127, '7f'],
    [128, '8001'],
    [150, '9601'],
    [300, 'ac02'],
    [0xffff_ffff, 'ffffffff0f'],
  ])('encodes %d as %s and decodes it back', (value, encoded) => {
    expect(toHex(encodeVarint(value))).toBe(encoded);
    expect(decodeVarint(fromHexUint8(encoded), 0)).toEqual({ value: BigInt(value), next: encoded.length / 2 });
  });

  it('handles the full 64-bit range', () => {
    const max = (1n << 64n) - 1n;
    expect(toHex(encodeVarint(max))).toBe('ffffffffffffffffff01');
    expect(decodeVarint(fromHexUint8('ffffffffffffffffff01'), 0).value).toBe(max);
    expect(() => encodeVarint(max + 1n)).toThrow(RangeError);
    expect(() => encodeVarint(-1)).toThrow(RangeError);
  });

  it('rejects truncated, overlong and over-64-bit varints as proto_malformed', () => {
    expect(failureOf(() => decodeVarint(fromHexUint8('80'), 0)).code).toBe('proto_malformed');
    expect(failureOf(() => decodeVarint(fromHexUint8(''), 0)).message).toBe('protobuf: truncated varint');
    expect(failureOf(() => decodeVarint(fromHexUint8('ffffffffffffffffffff01'), 0)).message).toBe('protobuf: varint longer than 10 bytes');
    expect(failureOf(() => decodeVarint(fromHexUint8('ffffffffffffffffff02'), 0)).message).toBe('protobuf: varint exceeds 64 bits');
  });
});

describe('decodeMessage', () => {
  it('reads the protobuf.dev examples: 08 96 01 and 12 07 "testing"', () => {
    const m = decodeMessage(fromHexUint8('089601 120774657374696e67'));
    expect(m.uint32(1)).toBe(150);
    expect(Buffer.from(m.bytes(2)!).toString()).toBe('testing');
    expect(m.has(3)).toBe(false);
    expect(m.bytes(3)).toBeUndefined();
  });

  it('returns length-delimited values as views of the input (signed bytes stay exact)', () => {
    const input = fromHexUint8('0a03010203');
    const value = decodeMessage(input).bytes(1)!;
    expect(value.buffer).toBe(input.buffer);
    expect(value.byteOffset).toBe(2);
  });

  it('skips unknown fields of every wire type', () => {
    // field 9 fixed32, field 10 fixed64, field 11 varint, field 12 bytes, then field 1 bytes
    const m = decodeMessage(fromHexUint8('4d01020304 510102030405060708 5805 6201ff 0a02abcd'));
    expect(toHex(m.bytes(1)!)).toBe('abcd');
    expect(m.fields.get(9)).toEqual([{ wireType: WireType.fixed32, value: fromHexUint8('01020304') }]);
  });

  it('keeps the last occurrence of a singular field, as protobuf parsers do', () => {
    expect(decodeMessage(fromHexUint8('0801 0802')).uint32(1)).toBe(2);
  });

  it('reads bools and large uint64 values', () => {
    const m = decodeMessage(fromHexUint8('0801 10ffffffffffffff0f'));
    expect(m.bool(1)).toBe(true);
    expect(m.uint64(2)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each([
    ['a group (wire type 3)', '0b', 'protobuf: unsupported wire type 3'],
    ['wire type 7', '0f', 'protobuf: unsupported wire type 7'],
    ['field number 0', '0001', 'protobuf: invalid field number 0'],
    ['a length past the end', '0a05010203', 'protobuf: length-delimited field runs past the end'],
    ['a 4 GB declared length', '0affffffff0f00', 'protobuf: length-delimited field runs past the end'],
    ['a truncated fixed32', '0d0102', 'protobuf: truncated fixed-width field'],
    ['a truncated fixed64', '09010203040506', 'protobuf: truncated fixed-width field'],
    ['a truncated tag', '80', 'protobuf: truncated varint'],
    ['a tag over 32 bits', '8080808010', 'protobuf: tag exceeds 32 bits'],
  ])('rejects %s as proto_malformed', (_name, bytes, message) => {
    const f = failureOf(() => decodeMessage(fromHexUint8(bytes)));
    expect(f.code).toBe('proto_malformed');
    expect(f.message).toBe(message);
  });

  it('rejects a field read with the wrong wire type or out of range', () => {
    const m = decodeMessage(fromHexUint8('0801 1201ff 18ffffffff1f 20808080808080808001'));
    expect(failureOf(() => m.bytes(1, 'ephemeral')).message).toBe('protobuf: ephemeral has wire type 0, expected 2');
    expect(failureOf(() => m.uint32(2)).message).toBe('protobuf: field 2 has wire type 2, expected 0');
    expect(failureOf(() => m.uint32(3, 'serial')).message).toBe('protobuf: serial exceeds uint32');
    expect(failureOf(() => m.uint64(4, 'notAfter')).message).toBe('protobuf: notAfter exceeds 2^53-1');
  });
});

describe('encodeMessage', () => {
  it('encodes bytes and varint fields in the order given, omitting undefined ones', () => {
    const out = encodeMessage([
      { field: 1, varint: 150 },
      { field: 2, bytes: Buffer.from('testing') },
      { field: 3, bytes: undefined },
      { field: 4, varint: undefined },
      { field: 16, bytes: new Uint8Array(0) },
    ]);
    expect(toHex(out)).toBe('089601120774657374696e67' + '8201' + '00');
  });

  it('rejects invalid field numbers (a caller bug)', () => {
    expect(() => encodeMessage([{ field: 0, varint: 1 }])).toThrow(RangeError);
    expect(() => encodeMessage([{ field: 2 ** 29, varint: 1 }])).toThrow(RangeError);
  });

  it('round-trips random fields', () => {
    for (let i = 0; i < 200; i++) {
      const r = fuzzBytes(`roundtrip-${i}`, 64);
      const len = r[0]! % 40;
      const payload = fuzzBytes(`payload-${i}`, len);
      const number = BigInt('0x' + toHex(r.subarray(1, 9)));
      const field = 1 + (r[9]! % 2000);
      const encoded = encodeMessage([
        { field, bytes: payload },
        { field: field + 1, varint: number },
      ]);
      const m = decodeMessage(encoded);
      expect(toHex(m.bytes(field)!)).toBe(toHex(payload));
      expect(m.fields.get(field + 1)).toEqual([{ wireType: WireType.varint, value: number }]);
    }
  });
});

describe('fuzz', () => {
  it('random bytes parse or fail with proto_malformed, nothing else', () => {
    let failed = 0;
    for (let i = 0; i < 3000; i++) {
      const r = fuzzBytes(`random-${i}`, 1 + (i % 80));
      try {
        const m = decodeMessage(r);
        // typed reads of whatever parsed may fail too, but only as proto_malformed
        for (const field of m.fields.keys()) {
          for (const read of [() => m.bytes(field), () => m.uint32(field), () => m.uint64(field), () => m.bool(field)]) {
            try {
              read();
            } catch (err) {
              expect(err).toBeInstanceOf(ProbeFailure);
              expect((err as ProbeFailure).code).toBe('proto_malformed');
            }
          }
        }
      } catch (err) {
        failed++;
        expect(err).toBeInstanceOf(ProbeFailure);
        expect((err as ProbeFailure).code).toBe('proto_malformed');
      }
    }
    expect(failed).toBeGreaterThan(1000);
  });

  it('every truncation of a valid message parses or fails with proto_malformed', () => {
    const valid = encodeMessage([
      { field: 1, varint: 1n << 60n },
      { field: 2, bytes: fuzzBytes('t', 200) },
      { field: 3, varint: 5 },
    ]);
    for (let n = 0; n < valid.length; n++) {
      try {
        decodeMessage(valid.subarray(0, n));
      } catch (err) {
        expect((err as ProbeFailure).code).toBe('proto_malformed');
      }
    }
  });
});
