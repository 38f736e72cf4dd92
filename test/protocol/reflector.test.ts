import { createHmac } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { MAX_MEDIA_PACKET_LENGTH } from '../../src/protocol/media-packet.js';
import {
  FrameReader,
  MAX_REFLECTOR_FRAME_LENGTH,
  STREAM_PROOF_LENGTH,
  STREAM_REFUSAL_REASONS,
  STREAM_REQUEST_LENGTH,
  encodeFrame,
  encodeStreamRequest,
  refusalReason,
  verifyStreamRequest,
  type StreamDirection,
} from '../../src/protocol/reflector.js';

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

describe('FrameReader.take: frames, then what follows them raw', () => {
  it('hands frames until told to stop, then returns the rest of the chunk and takes no more', () => {
    const request = encodeFrame(Buffer.alloc(48, 1));
    const upload = Buffer.from('raw upload bytes');
    for (const cut of [0, 1, 2, 30, 50]) {
      const reader = new FrameReader();
      const seen: number[] = [];
      const stream = Buffer.concat([encodeFrame(Buffer.alloc(3, 9)), request, upload]);
      const first = reader.take(stream.subarray(0, 5 + cut), (f) => seen.push(f.length) !== 2);
      const rest = first ?? reader.take(stream.subarray(5 + cut), (f) => seen.push(f.length) !== 2);
      expect(seen).toEqual([3, 48]);
      // What came in the same chunk after the stopping frame; later chunks come back whole, unframed.
      expect(first === null ? rest!.equals(upload) : Buffer.concat([first, stream.subarray(5 + cut)]).equals(upload)).toBe(true);
      const later = encodeFrame(Buffer.alloc(1));
      expect(reader.take(later, () => true)!.equals(later)).toBe(true);
    }
    expect(new FrameReader().take(encodeFrame(Buffer.alloc(2)), () => true)).toBeNull();
  });
});

describe('FrameReader limits', () => {
  it('stops at a length header above its limit: the frames before it come out, nothing after', () => {
    const reader = new FrameReader(MAX_REFLECTOR_FRAME_LENGTH);
    const ok = Buffer.alloc(MAX_REFLECTOR_FRAME_LENGTH, 7);
    const header = Buffer.from([(MAX_REFLECTOR_FRAME_LENGTH + 1) >> 8, (MAX_REFLECTOR_FRAME_LENGTH + 1) & 0xff]);
    const frames = reader.push(Buffer.concat([encodeFrame(ok), header, Buffer.alloc(5)]));
    expect(frames.map((f) => f.length)).toEqual([MAX_REFLECTOR_FRAME_LENGTH]);
    expect(reader.oversized).toBe(MAX_REFLECTOR_FRAME_LENGTH + 1);
    expect(reader.push(encodeFrame(Buffer.alloc(3)))).toEqual([]);
    // Also when the header itself arrives a byte at a time.
    const split = new FrameReader(1280);
    expect(split.push(Buffer.from([0xff]))).toEqual([]);
    expect(split.oversized).toBeNull();
    expect(split.push(Buffer.from([0xff]))).toEqual([]);
    expect(split.oversized).toBe(0xffff);
  });

  it('the largest legitimate frame is the largest media packet (the stream request is shorter)', () => {
    expect(MAX_REFLECTOR_FRAME_LENGTH).toBe(MAX_MEDIA_PACKET_LENGTH);
    expect(STREAM_REQUEST_LENGTH).toBeLessThan(MAX_REFLECTOR_FRAME_LENGTH);
  });

  it('copies each byte at most once: a frame dripped a byte at a time is assembled with one copy', () => {
    const frame = encodeFrame(Buffer.alloc(MAX_REFLECTOR_FRAME_LENGTH, 9));
    const reader = new FrameReader(MAX_REFLECTOR_FRAME_LENGTH);
    const concat = vi.spyOn(Buffer, 'concat');
    const copy = vi.spyOn(Buffer.prototype, 'copy');
    try {
      const out: Buffer[] = [];
      for (const b of frame) out.push(...reader.push(Buffer.from([b])));
      expect(out).toHaveLength(1);
      expect(out[0]!.equals(frame.subarray(2))).toBe(true);
      expect(concat).not.toHaveBeenCalled();
      // One copy per dripped byte of the body into the frame's own buffer: linear in its length.
      expect(copy).toHaveBeenCalledTimes(MAX_REFLECTOR_FRAME_LENGTH);
    } finally {
      concat.mockRestore();
      copy.mockRestore();
    }
    // A frame inside one chunk is handed out as a view, with no copy at all.
    const whole = new FrameReader(MAX_REFLECTOR_FRAME_LENGTH);
    const chunk = Buffer.concat([frame, frame]);
    const [f1, f2] = whole.push(chunk);
    expect(f1!.buffer).toBe(chunk.buffer);
    expect(f2!.buffer).toBe(chunk.buffer);
  });
});

/**
 * Fixed vectors, computed independently of src/ (Python's hmac and hashlib, the construction in
 * reflector.ts's header) for key 5a x 32, nonce 00..0f, N = 16384. The download one is also what
 * the encoder produced before requests carried a direction (commit 2cedbd3): the same bytes.
 */
const VECTORS = {
  download: {
    request: '000102030405060708090a0b0c0d0e0f6b7a7aed1b440b795b5bed7dd050f9c5c86c67fd8981d5da3efe6bd7116d6ada',
    proof: '53dfbf58dec5555a25f8c51f7b19d93b',
  },
  upload: {
    request: '000102030405060708090a0b0c0d0e0fc87bce2603ec901aba035c8090af3c80cd86721acc2f7f2e1ad232b27e57fdf8',
    proof: 'd320e8e466683a313b17a89e3438c7ea',
  },
  both: {
    request: '000102030405060708090a0b0c0d0e0f4e269dff2833174a3a0ec2b962427edbdd4e939e5c8c2eb7bb1fbcd3ea6111a6',
    proof: '5834e3cf423212bc66acbbffa99e3044',
  },
} as const;

describe('stream request: direction', () => {
  it.each(Object.keys(VECTORS) as StreamDirection[])('%s: the bytes and proof of the fixed vector, both ways', (direction) => {
    const v = VECTORS[direction];
    const r = encodeStreamRequest(16384, KEY, { nonce: NONCE, direction });
    expect({ request: r.bytes.toString('hex'), proof: r.proof.toString('hex') }).toEqual(v);
    const verified = verifyStreamRequest(Buffer.from(v.request, 'hex'), KEY)!;
    expect({ bytesRequested: verified.bytesRequested, direction: verified.direction, proof: verified.proof.toString('hex') }).toEqual({
      bytesRequested: 16384,
      direction,
      proof: v.proof,
    });
    expect(verified.tag.equals(r.tag)).toBe(true);
  });

  it('a request without a direction (reserved bytes zero, as probers sent before) is a download', () => {
    expect(encodeStreamRequest(16384, KEY, { nonce: NONCE }).direction).toBe('download');
    expect(verifyStreamRequest(Buffer.from(VECTORS.download.request, 'hex'), KEY)?.direction).toBe('download');
  });

  it('refuses an authentic request with a direction it does not know or a reserved byte set', () => {
    // Built as the encoder does, with fields it never writes: authentic under the key, yet not ours to serve.
    const forge = (direction: number, reservedAt?: number): Buffer => {
      const fields = Buffer.alloc(16);
      fields.writeUInt32BE(16384, 0);
      fields[4] = direction;
      if (reservedAt !== undefined) fields[reservedAt] = 1;
      const h = (...parts: Buffer[]) => parts.reduce((m, p) => m.update(p), createHmac('sha256', KEY)).digest().subarray(0, 16);
      const tag = h(Buffer.from('callprobe stream v1'), NONCE, fields);
      const mask = h(Buffer.from('callprobe stream mask v1'), tag);
      return Buffer.concat([NONCE, Buffer.from(fields.map((b, i) => b ^ mask[i]!)), tag]);
    };
    expect(verifyStreamRequest(forge(1), KEY)?.direction).toBe('upload');
    expect(verifyStreamRequest(forge(3), KEY)).toBeNull();
    expect(verifyStreamRequest(forge(0xff), KEY)).toBeNull();
    expect(verifyStreamRequest(forge(0, 5), KEY)).toBeNull();
    expect(verifyStreamRequest(forge(2, 15), KEY)).toBeNull();
  });
});

describe('stream request', () => {
  it('is 48 bytes with no constant byte: nonce, masked fields, tag', () => {
    const r = encodeStreamRequest(16384, KEY, { nonce: NONCE });
    expect(r.bytes.length).toBe(STREAM_REQUEST_LENGTH);
    expect(r.bytes.subarray(0, 16).equals(NONCE)).toBe(true);
    expect(r.proof.length).toBe(STREAM_PROOF_LENGTH);
    // Deterministic for a given nonce and key; different nonces give unrelated bytes.
    expect(encodeStreamRequest(16384, KEY, { nonce: NONCE }).bytes.equals(r.bytes)).toBe(true);
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

  it('carries a refusal per reason: 16 bytes the reflector and the prober derive alike, none equal to the proof', () => {
    const r = encodeStreamRequest(4096, KEY, { nonce: NONCE });
    const v = verifyStreamRequest(r.bytes, KEY)!;
    for (const reason of Object.keys(STREAM_REFUSAL_REASONS) as Array<keyof typeof STREAM_REFUSAL_REASONS>) {
      expect(v.refusals[reason].equals(r.refusals[reason])).toBe(true);
      expect(r.refusals[reason].length).toBe(STREAM_PROOF_LENGTH);
      expect(r.refusals[reason].equals(r.proof)).toBe(false);
      expect(refusalReason(r.refusals[reason], r)).toBe(reason);
    }
    expect(r.refusals.too_large.equals(r.refusals.rate_limited)).toBe(false);
    expect(refusalReason(r.proof, r)).toBeNull();
    expect(refusalReason(r.refusals.too_large.subarray(0, 15), r)).toBeNull();
    // Another request's refusal, or one under another key, is no refusal of this one.
    expect(refusalReason(encodeStreamRequest(4096, KEY).refusals.too_large, r)).toBeNull();
    expect(refusalReason(encodeStreamRequest(4096, OTHER, { nonce: NONCE }).refusals.too_large, r)).toBeNull();
  });

  it('rejects out-of-range counts and nonces as our own bugs', () => {
    expect(() => encodeStreamRequest(-1, KEY)).toThrow(RangeError);
    expect(() => encodeStreamRequest(2 ** 32, KEY)).toThrow(RangeError);
    expect(() => encodeStreamRequest(1, KEY, { nonce: Buffer.alloc(15) })).toThrow(RangeError);
  });
});
