import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import {
  connectionHeader,
  DEFAULT_MAX_FRAME_SIZE,
  encodeFrame,
  FrameDecoder,
  PROTOCOL_MAX_FRAME_SIZE,
  WA_HEADER_LENGTH,
} from '../../src/protocol/waframe.js';
import { failureOf, fromHexUint8, fuzzBytes, toHex } from '../helpers/bytes.js';

describe('connectionHeader', () => {
  it("is 'W' 'A' magic version: 57 41 06 03 for WhatsApp's current values", () => {
    expect(toHex(connectionHeader(6, 3))).toBe('57410603');
    expect(WA_HEADER_LENGTH).toBe(4);
  });

  it('refuses values that are not bytes', () => {
    expect(() => connectionHeader(256, 3)).toThrow(RangeError);
    expect(() => connectionHeader(6, -1)).toThrow(RangeError);
    expect(() => connectionHeader(6, 1.5)).toThrow(RangeError);
  });
});

describe('encodeFrame', () => {
  it('prefixes a 3-byte big-endian length', () => {
    expect(toHex(encodeFrame(new Uint8Array(0)))).toBe('000000');
    expect(toHex(encodeFrame(fromHexUint8('abcdef')))).toBe('000003abcdef');
    expect(toHex(encodeFrame(new Uint8Array(0x24)).subarray(0, 3))).toBe('000024');
    expect(toHex(encodeFrame(new Uint8Array(0x012345)).subarray(0, 3))).toBe('012345');
  });

  it('refuses payloads over the limit (a caller bug, so RangeError)', () => {
    expect(() => encodeFrame(new Uint8Array(11), 10)).toThrow(RangeError);
    expect(encodeFrame(new Uint8Array(10), 10)).toHaveLength(13);
  });
});

describe('FrameDecoder', () => {
  it('decodes frames from one chunk', () => {
    const d = new FrameDecoder();
    expect(d.push(fromHexUint8('000002aabb 000000 000001cc')).map(toHex)).toEqual(['aabb', '', 'cc']);
    expect(d.bufferedBytes).toBe(0);
    expect(d.bytesReceived).toBe(12);
    d.end();
  });

  it('decodes the same frames whatever the chunking (every single split, and byte by byte)', () => {
    const stream = fromHexUint8('000002aabb 000003010203 000000 000001ff');
    const expected = ['aabb', '010203', '', 'ff'];
    for (let split = 0; split <= stream.length; split++) {
      const d = new FrameDecoder();
      const frames = [...d.push(stream.subarray(0, split)), ...d.push(stream.subarray(split))].map(toHex);
      expect(frames, `split at ${split}`).toEqual(expected);
      d.end();
    }
    const d = new FrameDecoder();
    const frames: string[] = [];
    for (const byte of stream) frames.push(...d.push(Uint8Array.of(byte)).map(toHex));
    expect(frames).toEqual(expected);
  });

  it("takes the client's connection header first when asked (server side)", () => {
    const d = new FrameDecoder({ headerLength: WA_HEADER_LENGTH });
    expect(d.header).toBeNull();
    expect(d.push(fromHexUint8('5741'))).toEqual([]);
    expect(d.header).toBeNull();
    expect(d.push(fromHexUint8('0603 000002')).map(toHex)).toEqual([]);
    expect(toHex(d.header!)).toBe('57410603');
    expect(d.push(fromHexUint8('abcd')).map(toHex)).toEqual(['abcd']);
    d.end();
  });

  it('does not alias the caller\'s chunk buffers', () => {
    const d = new FrameDecoder();
    const chunk = fromHexUint8('000002aa');
    d.push(chunk);
    chunk.fill(0);
    expect(d.push(fromHexUint8('bb')).map(toHex)).toEqual(['aabb']);
  });

  it('accepts a frame of exactly the limit and rejects one byte more', () => {
    const ok = new FrameDecoder({ maxFrameSize: 5 });
    expect(ok.push(fromHexUint8('000005 0102030405')).map(toHex)).toEqual(['0102030405']);
    const f = failureOf(() => new FrameDecoder({ maxFrameSize: 5 }).push(fromHexUint8('000006')));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence).toEqual({ declaredLength: 6, maxFrameSize: 5, lengthHex: '000006' });
  });

  it('rejects a 16 MB declared length as soon as its 3 length bytes arrive, buffering nothing', () => {
    const d = new FrameDecoder();
    expect(d.maxFrameSize).toBe(DEFAULT_MAX_FRAME_SIZE);
    expect(d.push(fromHexUint8('ff'))).toEqual([]);
    expect(d.push(fromHexUint8('ff'))).toEqual([]);
    const f = failureOf(() => d.push(fromHexUint8('ff')));
    expect(f.code).toBe('proto_malformed');
    expect(f.message).toBe('frame declares 16777215 bytes, above the limit of 65536');
    expect(f.evidence).toEqual({ declaredLength: 0xffffff, maxFrameSize: 65536, lengthHex: 'ffffff' });
    expect(d.bufferedBytes).toBe(0);
    // The decoder stays failed: more bytes (the would-be body) are refused, not buffered.
    expect(failureOf(() => d.push(new Uint8Array(1000)))).toBe(f);
    expect(d.bufferedBytes).toBe(0);
    expect(failureOf(() => d.end())).toBe(f);
  });

  it('delivers the frames before an oversized length in the same chunk, then fails', () => {
    const d = new FrameDecoder({ maxFrameSize: 100 });
    expect(d.push(fromHexUint8('000001aa 000065 ffff')).map(toHex)).toEqual(['aa']);
    expect(d.bufferedBytes).toBe(0);
    const f = failureOf(() => d.push(fromHexUint8('00')));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence.declaredLength).toBe(101);
    expect(failureOf(() => d.end())).toBe(f);
  });

  it('accepts the protocol maximum as a limit, and no more', () => {
    expect(new FrameDecoder({ maxFrameSize: PROTOCOL_MAX_FRAME_SIZE }).maxFrameSize).toBe(0xffffff);
    expect(() => new FrameDecoder({ maxFrameSize: PROTOCOL_MAX_FRAME_SIZE + 1 })).toThrow(RangeError);
    expect(() => new FrameDecoder({ maxFrameSize: -1 })).toThrow(RangeError);
  });

  it('reports a stream that ends inside a frame or header as truncated (proto_malformed)', () => {
    const partialBody = new FrameDecoder();
    partialBody.push(fromHexUint8('000005 0102'));
    const f = failureOf(() => partialBody.end());
    expect(f.code).toBe('proto_malformed');
    expect(f.message).toBe('stream ended inside a frame (truncated)');
    expect(f.evidence).toEqual({ bufferedBytes: 5, declaredLength: 5 });

    const partialLength = new FrameDecoder();
    partialLength.push(fromHexUint8('00'));
    expect(failureOf(() => partialLength.end()).evidence).toEqual({ bufferedBytes: 1 });

    const partialHeader = new FrameDecoder({ headerLength: 4 });
    partialHeader.push(fromHexUint8('5741'));
    expect(failureOf(() => partialHeader.end()).message).toBe('stream ended inside the 4-byte connection header');

    new FrameDecoder().end(); // nothing received: not truncated
  });

  it('fuzz: random chunks either decode or fail with proto_malformed, memory bounded by the limit', () => {
    for (let i = 0; i < 2000; i++) {
      const d = new FrameDecoder({ maxFrameSize: 300, headerLength: i % 2 === 0 ? 0 : 4 });
      const stream = fuzzBytes(`stream-${i}`, 1 + (i % 700));
      let at = 0;
      let j = 0;
      try {
        while (at < stream.length) {
          const n = 1 + (fuzzBytes(`cut-${i}-${j++}`, 1)[0]! % 64);
          for (const frame of d.push(stream.subarray(at, at + n))) expect(frame.length).toBeLessThanOrEqual(300);
          expect(d.bufferedBytes).toBeLessThan(300 + 3 + 4);
          at += n;
        }
        d.end();
      } catch (err) {
        expect(err).toBeInstanceOf(ProbeFailure);
        expect((err as ProbeFailure).code).toBe('proto_malformed');
      }
    }
  });

  it('fuzz: random frames round-trip through random chunking', () => {
    for (let i = 0; i < 300; i++) {
      const payloads = Array.from({ length: 1 + (i % 5) }, (_, k) => fuzzBytes(`p-${i}-${k}`, (i * 7 + k * 13) % 200));
      const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
      const d = new FrameDecoder();
      const out: string[] = [];
      let at = 0;
      let j = 0;
      while (at < stream.length) {
        const n = 1 + (fuzzBytes(`c-${i}-${j++}`, 1)[0]! % 50);
        out.push(...d.push(stream.subarray(at, at + n)).map(toHex));
        at += n;
      }
      d.end();
      expect(out).toEqual(payloads.map(toHex));
    }
  });
});
