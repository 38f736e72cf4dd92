import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import { encodeReqPqMulti } from '../../src/protocol/mtproto.js';
import {
  DEFAULT_MAX_FRAME_SIZE,
  MTPROTO_TRANSPORTS,
  createFrameDecoder,
  createFrameEncoder,
  detectClientTransport,
  transportErrorCode,
  transportErrorPayload,
  type FrameDecoder,
  type MtprotoTransport,
  type TransportFrame,
} from '../../src/protocol/mtproto-transport.js';
import { failureOf, fromHex, seededBytes, toHex } from '../helpers/bytes.js';

/** The samples-auth_key request (snapshot A in mtproto.test.ts): 40 bytes. */
const REQ = encodeReqPqMulti(fromHex('AC7EC649662ECF3CF3BA991B9D8DABD5'), 0x66c30d0d000da32cn);

/** Feeds a stream in random chunk sizes (including 1-byte chunks) and collects the frames. */
function feedInChunks(decoder: FrameDecoder, stream: Uint8Array, random: (n: number) => Buffer): TransportFrame[] {
  const frames: TransportFrame[] = [];
  let at = 0;
  while (at < stream.length) {
    const size = 1 + ((random(1)[0] ?? 0) % 23);
    frames.push(...decoder.push(stream.subarray(at, at + size)));
    at += size;
  }
  return frames;
}

/** A fixed "random" source: the padded transport draws one byte for the pad length, then the pad. */
function fixedRandom(...draws: Uint8Array[]): (n: number) => Uint8Array {
  return (n) => {
    const next = draws.shift();
    if (!next || next.length < n) throw new Error('test random source exhausted');
    return next.subarray(0, n);
  };
}

describe('encoders (core.telegram.org/mtproto/mtproto-transports)', () => {
  it('abridged: EF once, then len/4 in one byte', () => {
    const enc = createFrameEncoder('abridged');
    expect(toHex(enc.encode(REQ))).toBe('ef' + '0a' + toHex(REQ));
    expect(toHex(enc.encode(REQ))).toBe('0a' + toHex(REQ));
  });

  it('abridged: 7F and a 3-byte length from 127 words (508 bytes) on', () => {
    const enc = createFrameEncoder('abridged', { sendTag: false });
    expect(toHex(enc.encode(new Uint8Array(504)).subarray(0, 1))).toBe('7e');
    expect(toHex(enc.encode(new Uint8Array(508)).subarray(0, 4))).toBe('7f7f0000');
    expect(toHex(enc.encode(new Uint8Array(4 * 0x012345)).subarray(0, 4))).toBe('7f452301');
  });

  it('abridged: refuses payloads that are not whole words, and empty payloads (our misuse: RangeError)', () => {
    expect(() => createFrameEncoder('abridged').encode(new Uint8Array(5))).toThrow(RangeError);
    expect(() => createFrameEncoder('intermediate').encode(new Uint8Array(0))).toThrow(RangeError);
  });

  it('intermediate: EEEEEEEE once, then a u32 LE length', () => {
    const enc = createFrameEncoder('intermediate');
    expect(toHex(enc.encode(REQ))).toBe('eeeeeeee' + '28000000' + toHex(REQ));
    expect(toHex(enc.encode(REQ))).toBe('28000000' + toHex(REQ));
  });

  it('padded intermediate: DDDDDDDD once, length counts the 0-15 random bytes', () => {
    const enc = createFrameEncoder('padded_intermediate', {
      random: fixedRandom(Uint8Array.of(0x13), fromHex('aabbcc'), Uint8Array.of(0x00), Uint8Array.of(0xff), fromHex('00'.repeat(15))),
    });
    expect(toHex(enc.encode(REQ))).toBe('dddddddd' + '2b000000' + toHex(REQ) + 'aabbcc'); // 0x13 & 15 = 3
    expect(toHex(enc.encode(REQ))).toBe('28000000' + toHex(REQ)); // no padding
    expect(enc.encode(REQ).length).toBe(4 + 40 + 15); // 0xff & 15 = 15
  });

  it('padded intermediate: the pad length covers 0..15 with the real random source', () => {
    const enc = createFrameEncoder('padded_intermediate', { sendTag: false });
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) seen.add(enc.encode(REQ).length - 44);
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 16 }, (_, i) => i));
  });

  it('full: u32 total length | u32 seq from 0 | payload | CRC32 (IEEE) of all before it', () => {
    // The IEEE CRC-32 check value (crc32("123456789") = cbf43926) pins the variant.
    expect(crc32('123456789')).toBe(0xcbf43926);
    const enc = createFrameEncoder('full');
    const first = Buffer.from(enc.encode(REQ));
    expect(toHex(first.subarray(0, 8))).toBe('34000000' + '00000000');
    expect(toHex(first.subarray(8, 48))).toBe(toHex(REQ));
    expect(first.readUInt32LE(48)).toBe(crc32(first.subarray(0, 48)));
    const second = Buffer.from(enc.encode(REQ));
    expect(toHex(second.subarray(4, 8))).toBe('01000000');
  });
});

describe('decoders: stream in, frames out', () => {
  const random = seededBytes('transport-chunks');
  for (const transport of MTPROTO_TRANSPORTS) {
    it(`${transport}: decodes three frames fed in random chunks, server side checks the tag`, () => {
      const enc = createFrameEncoder(transport);
      const payloads = [REQ, new Uint8Array(600).fill(3), new Uint8Array(20).fill(9)];
      const stream = Buffer.concat(payloads.map((p) => enc.encode(p)));
      const dec = createFrameDecoder(transport, { expectTag: true });
      const frames = feedInChunks(dec, stream, random);
      expect(frames.length).toBe(3);
      frames.forEach((f, i) => {
        expect(f.kind).toBe('message');
        const payload = (f as { payload: Uint8Array }).payload;
        // The padded transport hands the padding up with the payload: the message's own length field delimits it.
        expect(toHex(payload.subarray(0, payloads[i]!.length))).toBe(toHex(payloads[i]!));
        expect(payload.length - payloads[i]!.length).toBeLessThanOrEqual(transport === 'padded_intermediate' ? 15 : 0);
      });
      expect(dec.bufferedBytes).toBe(0);
    });

    it(`${transport}: decodes a whole stream pushed at once, and nothing before a frame is complete`, () => {
      const enc = createFrameEncoder(transport, { sendTag: false });
      const frame = enc.encode(REQ);
      const dec = createFrameDecoder(transport);
      expect(dec.push(frame.subarray(0, frame.length - 1))).toEqual([]);
      expect(dec.bufferedBytes).toBe(frame.length - 1);
      expect(dec.push(frame.subarray(frame.length - 1)).length).toBe(1);
    });
  }

  it('server side: a stream without the expected tag is proto_malformed', () => {
    const f = failureOf(() => createFrameDecoder('intermediate', { expectTag: true }).push(fromHex('dddddddd28000000')));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence).toEqual({ transport: 'intermediate', firstBytesHex: 'dddddddd' });
  });

  it('a failed decoder keeps failing with the same error', () => {
    const dec = createFrameDecoder('abridged');
    const first = failureOf(() => dec.push(fromHex('80')));
    expect(failureOf(() => dec.push(fromHex('01000000')))).toBe(first);
  });
});

describe('transport errors surfaced as frames', () => {
  it('abridged: 01 6C FE FF FF is -404', () => {
    expect(createFrameDecoder('abridged').push(fromHex('016cfeffff'))).toEqual([{ kind: 'transport_error', code: -404, framed: true }]);
  });

  it('intermediate: 04 00 00 00 53 FE FF FF is -429', () => {
    expect(createFrameDecoder('intermediate').push(fromHex('0400000053feffff'))).toEqual([{ kind: 'transport_error', code: -429, framed: true }]);
  });

  it('padded intermediate: the code arrives with its padding', () => {
    expect(createFrameDecoder('padded_intermediate').push(fromHex('0700000044feffff010203'))).toEqual([
      { kind: 'transport_error', code: -444, framed: true },
    ]);
  });

  it('full: a framed -404 with seq and CRC', () => {
    const frame = createFrameEncoder('full').encode(transportErrorPayload(-404));
    expect(toHex(frame.subarray(0, 12))).toBe('10000000' + '00000000' + '6cfeffff');
    expect(createFrameDecoder('full').push(frame)).toEqual([{ kind: 'transport_error', code: -404, framed: true }]);
  });

  it('full: -429 in place of the length (Telethon issue 4042) is surfaced unframed and closes the stream', () => {
    const dec = createFrameDecoder('full');
    expect(dec.push(fromHex('53feffff'))).toEqual([{ kind: 'transport_error', code: -429, framed: false }]);
    expect(dec.closed).toBe(true);
    expect(dec.push(fromHex('53feffff53feffff'))).toEqual([]);
  });

  it('intermediate: a raw -404 where a length belongs is surfaced unframed', () => {
    expect(createFrameDecoder('intermediate').push(fromHex('6cfeffff'))).toEqual([{ kind: 'transport_error', code: -404, framed: false }]);
  });

  it('a top-bit length that is no HTTP-style code is a malformed length, not an error code', () => {
    expect(failureOf(() => createFrameDecoder('intermediate').push(fromHex('00000080'))).code).toBe('proto_malformed');
    expect(failureOf(() => createFrameDecoder('full').push(fromHex('ffffffff'))).code).toBe('proto_malformed');
  });

  it('transportErrorCode reads short frames like tdlib (under 16 bytes, negative first int)', () => {
    expect(transportErrorCode(fromHex('6cfeffff'))).toBe(-404);
    expect(transportErrorCode(fromHex('6cfeffff' + '00'.repeat(11)))).toBe(-404);
    expect(transportErrorCode(fromHex('6cfeffff' + '00'.repeat(12)))).toBeNull();
    expect(transportErrorCode(fromHex('94010000'))).toBeNull();
    expect(transportErrorCode(fromHex('6cfeff'))).toBeNull();
    expect(toHex(transportErrorPayload(-444))).toBe('44feffff');
    expect(() => transportErrorPayload(404)).toThrow(RangeError);
  });
});

describe('hostile lengths are rejected before buffering', () => {
  const cases: [MtprotoTransport, string, number][] = [
    ['abridged', '7fffffff', 0xffffff * 4],
    ['intermediate', 'ffffff7f', 0x7fffffff],
    ['padded_intermediate', '01000100', 0x00010001],
    ['full', 'ffffff7f00000000', 0x7fffffff - 12],
  ];
  for (const [transport, header, declared] of cases) {
    it(`${transport}: ${header} fails as soon as the length is read`, () => {
      const dec = createFrameDecoder(transport);
      const f = failureOf(() => dec.push(fromHex(header)));
      expect(f.code).toBe('proto_malformed');
      expect(f.evidence).toEqual({ transport, declaredFrameLength: declared });
      expect(dec.bufferedBytes).toBe(0);
    });
  }

  it('maxFrameSize is configurable; the default is 64 KiB', () => {
    expect(DEFAULT_MAX_FRAME_SIZE).toBe(65536);
    const dec = createFrameDecoder('intermediate', { maxFrameSize: 40 });
    expect(dec.push(createFrameEncoder('intermediate', { sendTag: false }).encode(REQ)).length).toBe(1);
    expect(failureOf(() => dec.push(fromHex('2c000000'))).evidence).toEqual({ transport: 'intermediate', declaredFrameLength: 44 });
  });

  it('abridged: empty frames and the quick-ack bit are malformed', () => {
    expect(failureOf(() => createFrameDecoder('abridged').push(fromHex('00'))).code).toBe('proto_malformed');
    expect(failureOf(() => createFrameDecoder('abridged').push(fromHex('7f000000'))).code).toBe('proto_malformed');
    expect(failureOf(() => createFrameDecoder('abridged').push(fromHex('8a'))).evidence).toEqual({ transport: 'abridged', firstByte: 0x8a });
  });

  it('full: a length under 12, a wrong seq and a wrong CRC are malformed', () => {
    expect(failureOf(() => createFrameDecoder('full').push(fromHex('0b000000'))).code).toBe('proto_malformed');
    const enc = createFrameEncoder('full');
    const frame0 = enc.encode(REQ);
    const dec = createFrameDecoder('full');
    dec.push(frame0);
    const replay = failureOf(() => dec.push(frame0));
    expect(replay.evidence).toEqual({ transport: 'full', seq: 0, expectedSeq: 1 });
    const corrupt = Buffer.from(createFrameEncoder('full').encode(REQ));
    corrupt[20] = (corrupt[20] ?? 0) ^ 1;
    const f = failureOf(() => createFrameDecoder('full').push(corrupt));
    expect(f.code).toBe('proto_malformed');
    expect(f.message).toBe('full: CRC32 mismatch');
  });
});

describe('detectClientTransport (the server side of the tags)', () => {
  it('tells the transports apart by their first bytes', () => {
    expect(detectClientTransport(fromHex('ef'))).toBe('abridged');
    expect(detectClientTransport(fromHex('eeeeeeee28000000'))).toBe('intermediate');
    expect(detectClientTransport(fromHex('dddddddd'))).toBe('padded_intermediate');
    expect(detectClientTransport(fromHex('3400000000000000'))).toBe('full');
    expect(detectClientTransport(fromHex('0123456789abcdef'))).toBe('obfuscated2');
    expect(detectClientTransport(Buffer.from('GET /apiws HTTP/1.1'))).toBe('http');
    expect(detectClientTransport(Buffer.from('POST /api'))).toBe('http');
    expect(detectClientTransport(fromHex('1603010200'))).toBe('tls');
    expect(detectClientTransport(fromHex('eeee'))).toBe('need_more');
    expect(detectClientTransport(fromHex('01234567'))).toBe('need_more');
  });
});

describe('properties', () => {
  for (const transport of MTPROTO_TRANSPORTS) {
    it(`${transport}: round trip of random payloads through random chunking`, () => {
      const random = seededBytes(`roundtrip-${transport}`);
      const enc = createFrameEncoder(transport, { random });
      const payloads = Array.from({ length: 60 }, () => {
        const p = random(20 + 4 * (random(2).readUInt16LE() % 300));
        p[3] = (p[3] ?? 0) & 0x7f; // first int non-negative: not a transport error
        return p;
      });
      const stream = Buffer.concat(payloads.map((p) => enc.encode(p)));
      const frames = feedInChunks(createFrameDecoder(transport, { expectTag: true }), stream, random);
      const decoded = frames.map((f, i) => (f.kind === 'message' ? toHex(f.payload.subarray(0, payloads[i]!.length)) : f.kind));
      expect(decoded).toEqual(payloads.map(toHex));
    });

    it(`${transport}: fuzz: random and mutated streams give frames or proto_malformed, never another exception`, () => {
      const random = seededBytes(`fuzz-${transport}`);
      const valid = Buffer.concat([createFrameEncoder(transport).encode(REQ), createFrameEncoder(transport, { sendTag: false }).encode(REQ)]);
      for (let i = 0; i < 1500; i++) {
        let input: Buffer;
        if (i % 3 === 0) input = random((random(1)[0] ?? 0) + 1);
        else if (i % 3 === 1) input = valid.subarray(0, (random(1)[0] ?? 0) % valid.length);
        else {
          input = Buffer.from(valid);
          input[(random(1)[0] ?? 0) % input.length] = random(1)[0] ?? 0;
        }
        const dec = createFrameDecoder(transport, { expectTag: i % 2 === 0, maxFrameSize: 1024 });
        try {
          feedInChunks(dec, input, random);
          expect(dec.bufferedBytes).toBeLessThanOrEqual(1024 + 12 + 23);
        } catch (err) {
          expect(err).toBeInstanceOf(ProbeFailure);
          expect((err as ProbeFailure).code).toBe('proto_malformed');
        }
      }
    });
  }
});
