import { describe, expect, it } from 'vitest';
import {
  FrameReader,
  STREAM_PROOF_LENGTH,
  STREAM_REQUEST_LENGTH,
  encodeFrame,
  encodeStreamRequest,
  verifyStreamRequest,
} from '../../src/reflector/protocol.js';

const KEY = Buffer.alloc(32, 0x5a);
const OTHER = Buffer.alloc(32, 0xa5);
const NONCE = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');

describe('RFC 4571 framing', () => {
  it('prefixes a 16-bit big-endian length', () => {
    expect(encodeFrame(Buffer.from('abc')).toString('hex')).toBe('0003616263');
    expect(() => encodeFrame(Buffer.alloc(0x10000))).toThrow(RangeError);
  });

  it('cuts a byte stream into frames whatever the chunking', () => {
    const a = Buffer.alloc(300, 1);
    const b = Buffer.alloc(5, 2);
    const stream = Buffer.concat([encodeFrame(a), encodeFrame(b), encodeFrame(Buffer.alloc(0))]);
    for (const cut of [1, 2, 3, 301, 302, 303]) {
      const reader = new FrameReader();
      const frames = [...reader.push(stream.subarray(0, cut)), ...reader.push(stream.subarray(cut))];
      expect(frames.map((f) => f.length)).toEqual([300, 5, 0]);
      expect(frames[0]!.equals(a) && frames[1]!.equals(b)).toBe(true);
    }
    const byByte = new FrameReader();
    expect([...stream].flatMap((x) => byByte.push(Buffer.from([x]))).map((f) => f.length)).toEqual([300, 5, 0]);
  });
});

describe('stream request', () => {
  it('is 48 bytes with no constant byte: nonce, masked fields, tag', () => {
    const r = encodeStreamRequest(16384, KEY, NONCE);
    expect(r.bytes.length).toBe(STREAM_REQUEST_LENGTH);
    expect(r.bytes.subarray(0, 16).equals(NONCE)).toBe(true);
    expect(r.proof.length).toBe(STREAM_PROOF_LENGTH);
    // Deterministic for a given nonce and key; different nonces give unrelated bytes.
    expect(encodeStreamRequest(16384, KEY, NONCE).bytes.equals(r.bytes)).toBe(true);
    const s = encodeStreamRequest(16384, KEY);
    expect(s.bytes.subarray(16).equals(r.bytes.subarray(16))).toBe(false);
  });

  it('verifies under the key and gives the byte count and the same proof', () => {
    for (const n of [0, 1, 262144, 0xffffffff]) {
      const r = encodeStreamRequest(n, KEY);
      const v = verifyStreamRequest(r.bytes, KEY);
      expect(v?.bytesRequested).toBe(n);
      expect(v?.proof.equals(r.proof)).toBe(true);
    }
  });

  it('refuses another key, any flipped bit, and other lengths', () => {
    const r = encodeStreamRequest(4096, KEY);
    expect(verifyStreamRequest(r.bytes, OTHER)).toBeNull();
    for (let bit = 0; bit < STREAM_REQUEST_LENGTH * 8; bit += 7) {
      const t = Buffer.from(r.bytes);
      t[bit >> 3]! ^= 1 << (bit & 7);
      expect(verifyStreamRequest(t, KEY)).toBeNull();
    }
    expect(verifyStreamRequest(r.bytes.subarray(0, 47), KEY)).toBeNull();
    expect(verifyStreamRequest(Buffer.concat([r.bytes, Buffer.alloc(1)]), KEY)).toBeNull();
  });

  it('rejects out-of-range counts and nonces as our own bugs', () => {
    expect(() => encodeStreamRequest(-1, KEY)).toThrow(RangeError);
    expect(() => encodeStreamRequest(2 ** 32, KEY)).toThrow(RangeError);
    expect(() => encodeStreamRequest(1, KEY, Buffer.alloc(15))).toThrow(RangeError);
  });
});
