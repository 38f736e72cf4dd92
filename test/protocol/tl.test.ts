import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import { TL_CONSTRUCTOR, TlReader, TlWriter, constructorHex } from '../../src/protocol/tl.js';
import { failureOf, seededBytes, toHex } from '../helpers/bytes.js';

describe('TL constructor ids (tdlib td/generate/scheme/mtproto_api.tl)', () => {
  it('match the schema', () => {
    expect(constructorHex(TL_CONSTRUCTOR.reqPqMulti)).toBe('be7e8ef1');
    expect(constructorHex(TL_CONSTRUCTOR.resPQ)).toBe('05162463');
    expect(constructorHex(TL_CONSTRUCTOR.vector)).toBe('1cb5c415');
  });
  it('are written little-endian, as in the samples-auth_key dumps', () => {
    expect(toHex(new TlWriter().uint32(TL_CONSTRUCTOR.reqPqMulti).finish())).toBe('f18e7ebe');
    expect(toHex(new TlWriter().uint32(TL_CONSTRUCTOR.resPQ).finish())).toBe('63241605');
    expect(toHex(new TlWriter().uint32(TL_CONSTRUCTOR.vector).finish())).toBe('15c4b51c');
  });
});

describe('TlWriter', () => {
  it('writes int, long and int128 little-endian', () => {
    const out = new TlWriter()
      .int32(-404)
      .uint32(0xdeadbeef)
      .int64(-2n)
      .int64(0xd09d1d85de64fd85n)
      .int128(Uint8Array.from({ length: 16 }, (_, i) => i))
      .finish();
    expect(toHex(out)).toBe('6cfeffff' + 'efbeadde' + 'feffffffffffffff' + '85fd64de851d9dd0' + '000102030405060708090a0b0c0d0e0f');
  });

  it('pads short strings to a multiple of 4 with zeros (1-byte length)', () => {
    expect(toHex(new TlWriter().bytes(new Uint8Array(0)).finish())).toBe('00000000');
    expect(toHex(new TlWriter().bytes(Uint8Array.of(1, 2, 3)).finish())).toBe('03010203');
    // The pq of the samples-auth_key resPQ: 8 bytes, 3 bytes of padding.
    expect(toHex(new TlWriter().bytes(Buffer.from('1be363a46f8edfc1', 'hex')).finish())).toBe('081be363a46f8edfc1000000');
    expect(new TlWriter().bytes(new Uint8Array(253)).finish().length).toBe(256);
  });

  it('uses FE and a 3-byte length from 254 bytes on', () => {
    const out = new TlWriter().bytes(new Uint8Array(254).fill(7)).finish();
    expect(toHex(out.subarray(0, 4))).toBe('fefe0000');
    expect(out.length).toBe(260);
    const big = new TlWriter().bytes(new Uint8Array(70000)).finish();
    expect(toHex(big.subarray(0, 4))).toBe('fe701101');
    expect(big.length).toBe(70004);
  });

  it('writes a boxed Vector<long>', () => {
    const out = new TlWriter().vectorLong([0x0bc35f3509f7b7a5n, 0xc3b42b026ce86b21n]).finish();
    expect(toHex(out)).toBe('15c4b51c' + '02000000' + 'a5b7f709355fc30b' + '216be86c022bb4c3');
  });

  it('rejects its own misuse with RangeError (not a parse failure)', () => {
    expect(() => new TlWriter().int128(new Uint8Array(15))).toThrow(RangeError);
    expect(() => new TlWriter().int64(1n << 64n)).toThrow(RangeError);
    expect(() => new TlWriter().bytes(new Uint8Array(1 << 24))).toThrow(RangeError);
  });
});

describe('TlReader', () => {
  it('reads back what the writer wrote (round trip over string lengths 0..600)', () => {
    const random = seededBytes('tl-roundtrip');
    for (let n = 0; n <= 600; n++) {
      const value = random(n);
      const longs = [BigInt.asIntN(64, random(8).readBigUInt64LE()), -1n, 0n];
      const bytes = new TlWriter().int32(n).bytes(value).vectorLong(longs).int128(random(16)).finish();
      expect(bytes.length % 4).toBe(0);
      const r = new TlReader(bytes);
      expect(r.int32()).toBe(n);
      expect(toHex(r.bytes())).toBe(toHex(value));
      expect(r.vectorLong()).toEqual(longs);
      expect(r.int128().length).toBe(16);
      expect(r.remaining).toBe(0);
    }
  });

  it('reads longs as signed 64-bit values', () => {
    const r = new TlReader(Buffer.from('85fd64de851d9dd0', 'hex'));
    expect(r.int64()).toBe(BigInt.asIntN(64, 0xd09d1d85de64fd85n));
  });

  it('rejects truncated primitives with proto_malformed', () => {
    expect(failureOf(() => new TlReader(new Uint8Array(3)).int32()).code).toBe('proto_malformed');
    expect(failureOf(() => new TlReader(new Uint8Array(7)).int64()).code).toBe('proto_malformed');
    expect(failureOf(() => new TlReader(new Uint8Array(15)).int128()).code).toBe('proto_malformed');
    expect(failureOf(() => new TlReader(new Uint8Array(0)).bytes()).code).toBe('proto_malformed');
  });

  it('names the field and offset in evidence', () => {
    const f = failureOf(() => new TlReader(new Uint8Array(6), 4).int32('resPQ.nonce'));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence).toEqual({ tlField: 'resPQ.nonce', tlOffset: 4 });
  });

  it('rejects a string longer than the bytes left, before slicing', () => {
    // FE + 3-byte length 0xffffff (16 MiB) with 4 bytes behind it.
    const f = failureOf(() => new TlReader(Buffer.from('feffffff00000000', 'hex')).bytes('pq'));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence).toEqual({ tlField: 'pq', tlOffset: 0 });
    // The padding must be there too: a 2-byte string needs 4 bytes in all.
    expect(failureOf(() => new TlReader(Buffer.from('020102', 'hex')).bytes()).code).toBe('proto_malformed');
    expect(failureOf(() => new TlReader(Buffer.from('fe', 'hex')).bytes()).code).toBe('proto_malformed');
  });

  it('rejects the 0xff length prefix', () => {
    const f = failureOf(() => new TlReader(Buffer.from('ff00000000000000' + '00'.repeat(16), 'hex')).bytes('pq'));
    expect(f.code).toBe('proto_malformed');
    expect(f.message).toContain('0xff');
  });

  it('rejects a vector with the wrong constructor, naming the constructor found', () => {
    const f = failureOf(() => new TlReader(Buffer.from('6324160500000000', 'hex')).vectorLong('fingerprints'));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence).toEqual({ tlField: 'fingerprints', tlOffset: 0, constructor: '05162463' });
  });

  it('rejects negative and oversized vector counts before building the array', () => {
    const negative = failureOf(() => new TlReader(Buffer.from('15c4b51cffffffff', 'hex')).vectorLong());
    expect(negative.code).toBe('proto_malformed');
    expect(negative.evidence.declaredCount).toBe(-1);
    const huge = failureOf(() => new TlReader(Buffer.from('15c4b51cffffff7f' + '00'.repeat(16), 'hex')).vectorLong());
    expect(huge.code).toBe('proto_malformed');
    expect(huge.evidence.declaredCount).toBe(0x7fffffff);
  });

  it('fuzz: random and truncated bytes give a value or proto_malformed, never another exception', () => {
    const random = seededBytes('tl-fuzz');
    const valid = new TlWriter().bytes(random(300)).vectorLong([1n, 2n, 3n]).bytes(random(5)).finish();
    const inputs: Uint8Array[] = [];
    for (let i = 0; i < 2000; i++) inputs.push(random(random(1)[0] ?? 0));
    for (let n = 0; n < valid.length; n++) inputs.push(valid.subarray(0, n));
    for (let i = 0; i < 1000; i++) {
      const mutated = Buffer.from(valid);
      mutated[(random(2).readUInt16LE() % mutated.length) | 0] = random(1)[0] ?? 0;
      inputs.push(mutated);
    }
    let failures = 0;
    for (const input of inputs) {
      try {
        const r = new TlReader(input);
        r.bytes();
        r.vectorLong();
        r.bytes();
      } catch (err) {
        expect(err).toBeInstanceOf(ProbeFailure);
        expect((err as ProbeFailure).code).toBe('proto_malformed');
        failures++;
      }
    }
    // Every truncation of the valid input fails; the full input alone would not.
    expect(failures).toBeGreaterThanOrEqual(valid.length);
  });
});
