import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  cryptoRng,
  decodeMediaEcho,
  decodeMediaPacket,
  deterministicRng,
  encodeMediaEcho,
  encodeMediaPacket,
  flowConstants,
  MAX_MEDIA_PACKET_LENGTH,
  MEDIA_SHAPES,
  mediaPacketLength,
  MIN_MEDIA_PACKET_LENGTH,
  opusLikeSize,
  SERVICE_SHAPES,
  type MediaShape,
  type ServiceShape,
  uniformInt,
  verifyMediaRequest,
  verifyTag,
} from '../../src/protocol/media-packet.js';
import { decodeRtp } from '../../src/protocol/rtp.js';
import { parseMessage } from '../../src/protocol/stun.js';
import { getXorPeerAddress } from '../../src/protocol/stun-attributes.js';
import { failureCodeOf } from '../helpers/bytes.js';
import { asV1Request } from '../helpers/media.js';

const KEY = Buffer.alloc(32, 0x42);
const OTHER_KEY = Buffer.alloc(32, 0x43);
const FLOW = 0x01020304;
const SEED = 'callprobe-test';

function packet(shape: MediaShape, extra: Partial<{ seq: number; controlOf: ServiceShape; payloadSize: number; seed: string }> = {}): Buffer {
  const rng = deterministicRng(extra.seed ?? SEED);
  const payloadSize = extra.payloadSize ?? opusLikeSize(rng);
  return encodeMediaPacket({
    shape,
    controlOf: extra.controlOf ?? 'whatsapp',
    flowId: FLOW,
    seq: extra.seq ?? 0,
    sendTimeUs: 1_000_000,
    payloadSize,
    key: KEY,
    rng,
  });
}

describe('flowConstants', () => {
  it('derives the per-flow constants from SHA-256("callprobe flow v1" || flow id)', () => {
    const f = flowConstants(FLOW);
    expect(f.ssrc).toBe(FLOW);
    expect(f.rtpSequenceBase).toBe(0xb6ad);
    expect(f.rtpTimestampBase).toBe(0x567ad887);
    expect(f.peerTag.toString('hex')).toBe('a4a8232e0bd40e49bebc21e94ed0c855');
    expect(f.stunPeer).toEqual({ family: 'IPv4', address: '30.36.178.181', port: 10699 });
  });
});

describe('encodeMediaPacket shapes (seed "callprobe-test", flow 0x01020304, seq 0, payload 136)', () => {
  // The first 16 bytes of each shape, and what they are.
  it('rtp: V=2, M=1 PT 111, seq 0xb6ad, ts 0x567ad887, SSRC = flow id, then payload', () => {
    const p = packet('rtp');
    expect(p.subarray(0, 16).toString('hex')).toBe('80efb6ad567ad88701020304e41546a1');
    expect(p.length).toBe(12 + 136);
    const rtp = decodeRtp(p);
    expect(rtp.header).toMatchObject({ marker: true, payloadType: 111, sequenceNumber: 0xb6ad, timestamp: 0x567ad887, ssrc: FLOW, extension: null });
  });

  it('whatsapp: 0x90 (V=2, X=1), M=1 PT 120, profile 0xDEBE with zero words: a 16-byte header', () => {
    const p = packet('whatsapp');
    expect(p.subarray(0, 16).toString('hex')).toBe('90f8b6ad567ad88701020304debe0000');
    expect(p.length).toBe(16 + 136);
    expect(decodeRtp(p).headerLength).toBe(16);
  });

  it('telegram: the 16-byte peer tag of the flow, then msg_key and whole AES blocks', () => {
    const p = packet('telegram');
    expect(p.subarray(0, 16).toString('hex')).toBe('a4a8232e0bd40e49bebc21e94ed0c855');
    expect(p.length).toBe(16 + 16 + 144);
    expect((p.length - 32) % 16).toBe(0);
  });

  it('stun: a Send indication (0x0016) with the magic cookie, XOR-PEER-ADDRESS and DATA', () => {
    const p = packet('stun');
    expect(p.subarray(0, 16).toString('hex')).toBe('001600982112a442e41546a11d95a728');
    expect(p.length).toBe(20 + 12 + 4 + 136);
    const msg = parseMessage(p);
    expect(msg.method).toBe(0x006);
    expect(msg.class).toBe('indication');
    expect(msg.attributes.map((a) => a.type)).toEqual([0x0012, 0x0013]);
    expect(getXorPeerAddress(msg)).toEqual({ family: 'IPv4', address: '30.36.178.181', port: 10699 });
    expect(msg.attributes[1]?.value.length).toBe(136);
  });

  it('whatsapp-stun: type 0x0800 with the cookie and an exact length, 0x4002 (a ms clock) then 0x4000 holding the payload', () => {
    const p = packet('whatsapp-stun');
    expect(p.subarray(0, 48).toString('hex')).toBe(
      '08000098' + '2112a442' + 'e41546a11d95a728b1f6a427' + '40020008' + '0000017a6d1c9f38' + '40000088' + '2d8b4a4490dda02e237a7ec6',
    );
    expect(p.length).toBe(20 + 12 + 4 + 136);
    // nDPI's rule: 20 + the message length is the whole datagram.
    expect(p.readUInt16BE(2) + 20).toBe(p.length);
    const msg = parseMessage(p);
    expect(msg).toMatchObject({ method: 0x200, class: 'request' });
    expect(msg.attributes.map((a) => a.type)).toEqual([0x4002, 0x4000]);
    expect(msg.attributes[0]!.value.readBigUInt64BE(0)).toBe(BigInt(flowConstants(FLOW).waClockBaseMs));
    // The clock advances one frame a packet.
    expect(parseMessage(packet('whatsapp-stun', { seq: 5 })).attributes[0]!.value.readBigUInt64BE(0)).toBe(BigInt(flowConstants(FLOW).waClockBaseMs + 100));
  });

  it('telegram-reflector: tgcalls framing (12 bytes of peer tag, their tag, our tag, u32 length) around a WebRTC Opus RTP packet', () => {
    const p = packet('telegram-reflector');
    const f = flowConstants(FLOW);
    expect(p.subarray(0, 36).toString('hex')).toBe('a4a8232e0bd40e49bebc21e9' + '6b545220' + 'cc8a4b61' + '00000094' + '80efb6ad567ad88701020304');
    expect(p.subarray(0, 12).equals(f.peerTag.subarray(0, 12))).toBe(true);
    expect(p.length).toBe(24 + 12 + 136);
    expect(p.readUInt32BE(20)).toBe(p.length - 24);
    expect(decodeRtp(p.subarray(24)).header).toMatchObject({ payloadType: 111, ssrc: FLOW, marker: true });
  });

  it('random: every byte of the control base shape inverted (here whatsapp)', () => {
    const p = packet('random', { controlOf: 'whatsapp' });
    expect(p.subarray(0, 16).toString('hex')).toBe('6f074952a9852778fefdfcfb2141ffff');
    const service = packet('whatsapp');
    expect(p.length).toBe(service.length);
    for (let i = 0; i < p.length; i++) expect(p[i]).toBe(~(service[i] as number) & 0xff);
  });

  it.each(SERVICE_SHAPES)('random over %s is the exact inverse of that shape with the same RNG', (base) => {
    const service = packet(base, { seq: 7 });
    const control = packet('random', { controlOf: base, seq: 7 });
    expect(Buffer.from(control.map((b) => ~b & 0xff)).equals(service)).toBe(true);
  });

  it('lengths follow mediaPacketLength for every shape and size', () => {
    for (const shape of MEDIA_SHAPES) {
      for (const payloadSize of [32, 33, 60, 61, 62, 63, 160, 1024]) {
        expect(packet(shape, { payloadSize, controlOf: 'telegram' }).length).toBe(mediaPacketLength(shape, payloadSize, 'telegram'));
      }
    }
    expect(mediaPacketLength('stun', 1024)).toBeLessThanOrEqual(MAX_MEDIA_PACKET_LENGTH);
    expect(mediaPacketLength('rtp', 32)).toBe(MIN_MEDIA_PACKET_LENGTH);
  });

  it('keeps per-flow constants and advances RTP sequence and timestamp per frame', () => {
    const a = decodeRtp(packet('rtp', { seq: 0 })).header;
    const b = decodeRtp(packet('rtp', { seq: 1 })).header;
    expect(b.ssrc).toBe(a.ssrc);
    expect(b.sequenceNumber).toBe((a.sequenceNumber + 1) % 0x10000);
    expect(b.timestamp).toBe(a.timestamp + 960); // RFC 7587: 48 kHz clock, 20 ms
    expect(b.marker).toBe(false);
    const wa0 = decodeRtp(packet('whatsapp', { seq: 0 })).header;
    const wa5 = decodeRtp(packet('whatsapp', { seq: 5 })).header;
    expect(wa5.timestamp - wa0.timestamp).toBe(5 * 320); // 16 kHz, 20 ms
    expect(packet('telegram', { seq: 9, seed: 'other' }).subarray(0, 16).equals(flowConstants(FLOW).peerTag)).toBe(true);
  });

  it('wraps the RTP sequence number at 2^16 while the trailer keeps 32 bits', () => {
    const seq = 0x10000 - 0xb6ad + 3; // RTP seq = (0xb6ad + seq) mod 2^16 = 3
    const p = packet('rtp', { seq });
    expect(decodeRtp(p).header.sequenceNumber).toBe(3);
    expect(decodeMediaPacket(p, KEY).seq).toBe(seq);
  });

  it('refuses bad arguments as bugs (RangeError)', () => {
    const base = { shape: 'rtp' as const, flowId: 1, seq: 0, sendTimeUs: 0, payloadSize: 100, key: KEY, rng: cryptoRng };
    expect(() => encodeMediaPacket({ ...base, payloadSize: 31 })).toThrow(RangeError);
    expect(() => encodeMediaPacket({ ...base, payloadSize: 1025 })).toThrow(RangeError);
    expect(() => encodeMediaPacket({ ...base, seq: 2 ** 32 })).toThrow(RangeError);
    expect(() => encodeMediaPacket({ ...base, flowId: -1 })).toThrow(RangeError);
    expect(() => encodeMediaPacket({ ...base, sendTimeUs: 1.5 })).toThrow(RangeError);
    expect(() => encodeMediaPacket({ ...base, key: Buffer.alloc(31) })).toThrow(RangeError);
    expect(() => encodeMediaPacket({ ...base, shape: 'skype' as MediaShape })).toThrow(RangeError);
  });
});

describe('trailer', () => {
  it('is exactly the documented construction (what the reflector implements)', () => {
    const p = packet('rtp');
    const n = p.length;
    const tag = p.subarray(n - 16);
    const mask = createHmac('sha256', KEY).update('callprobe media mask v2').update(tag).digest().subarray(0, 16);
    const clear = Buffer.from(p.subarray(n - 32, n - 16).map((b, i) => b ^ (mask[i] as number)));
    expect(clear.toString('hex')).toBe('01020304' + '00000000' + '00000000000f4240');
    const expected = createHmac('sha256', KEY).update('callprobe media v2').update(p.subarray(0, n - 32)).update(clear).digest().subarray(0, 16);
    expect(tag.equals(expected)).toBe(true);
    // Masked: the flow id does not appear in clear at the end of the packet.
    expect(p.subarray(n - 32, n - 28).readUInt32BE(0)).not.toBe(FLOW);
  });

  it.each(MEDIA_SHAPES)('%s round-trips through decodeMediaPacket', (shape) => {
    const rng = deterministicRng(`round trip ${shape}`);
    for (let seq = 0; seq < 20; seq++) {
      const sendTimeUs = 123_456_789_012 + seq * 20_000;
      const p = encodeMediaPacket({ shape, controlOf: 'stun', flowId: 0xfedcba98, seq, sendTimeUs, payloadSize: opusLikeSize(rng), key: KEY, rng });
      const d = decodeMediaPacket(p, KEY);
      expect(d).toEqual({
        flowId: 0xfedcba98,
        seq,
        sendTimeUs,
        shape,
        controlOf: shape === 'random' ? 'stun' : null,
        polarity: shape === 'random' ? 'inverted' : 'plain',
        version: 2,
        length: p.length,
      });
      expect(verifyTag(p, KEY)).toBe(shape === 'random' ? 'inverted' : 'plain');
    }
  });

  it('carries the largest send time a number holds exactly', () => {
    const rng = deterministicRng('max');
    const p = encodeMediaPacket({ shape: 'rtp', flowId: 0xffffffff, seq: 0xffffffff, sendTimeUs: Number.MAX_SAFE_INTEGER, payloadSize: 60, key: KEY, rng });
    expect(decodeMediaPacket(p, KEY)).toMatchObject({ flowId: 0xffffffff, seq: 0xffffffff, sendTimeUs: Number.MAX_SAFE_INTEGER });
  });

  it('rejects another key: verifyTag null, decode proto_mismatch', () => {
    for (const shape of MEDIA_SHAPES) {
      const p = packet(shape);
      expect(verifyTag(p, OTHER_KEY)).toBeNull();
      expect(failureCodeOf(() => decodeMediaPacket(p, OTHER_KEY))).toBe('proto_mismatch');
    }
  });

  it('rejects a change to any single byte with proto_mismatch', () => {
    for (const shape of ['whatsapp', 'random'] as const) {
      const p = packet(shape);
      for (let i = 0; i < p.length; i++) {
        const m = Buffer.from(p);
        m[i] = (m[i] as number) ^ 0x01;
        expect(verifyTag(m, KEY)).toBeNull();
        expect(failureCodeOf(() => decodeMediaPacket(m, KEY))).toBe('proto_mismatch');
      }
    }
  });

  it('rejects lengths no shape produces with proto_malformed', () => {
    const p = packet('rtp');
    expect(failureCodeOf(() => decodeMediaPacket(p.subarray(0, MIN_MEDIA_PACKET_LENGTH - 1), KEY))).toBe('proto_malformed');
    expect(failureCodeOf(() => decodeMediaPacket(Buffer.alloc(MAX_MEDIA_PACKET_LENGTH + 1), KEY))).toBe('proto_malformed');
    expect(failureCodeOf(() => decodeMediaPacket(new Uint8Array(0), KEY))).toBe('proto_malformed');
    expect(verifyTag(new Uint8Array(0), KEY)).toBeNull();
    // Truncated but still long enough: the tag no longer covers what is there.
    expect(failureCodeOf(() => decodeMediaPacket(p.subarray(0, p.length - 1), KEY))).toBe('proto_mismatch');
  });

  it('a key shorter than 32 bytes is a configuration error (RangeError)', () => {
    expect(() => verifyTag(packet('rtp'), Buffer.alloc(16))).toThrow(RangeError);
    expect(() => decodeMediaPacket(packet('rtp'), Buffer.alloc(16))).toThrow(RangeError);
  });
});

describe('request versions', () => {
  it('a v1 request (from an older prober) still verifies, as version 1, so the reflector echoes it verbatim', () => {
    const old = asV1Request(packet('rtp'), KEY);
    expect(verifyMediaRequest(old, KEY)).toMatchObject({ version: 1, polarity: 'plain', flowId: FLOW, seq: 0, sendTimeUs: 1_000_000 });
    expect(verifyMediaRequest(packet('rtp'), KEY)).toMatchObject({ version: 2, polarity: 'plain' });
    expect(decodeMediaPacket(old, KEY).version).toBe(1);
  });
});

describe('echo', () => {
  const echoOf = (p: Buffer, counts = { packets: 13, bytes: 1733 }): Buffer => encodeMediaEcho(verifyMediaRequest(p, KEY)!, KEY, counts);

  it('keeps the request before its trailer, same length, and seals flow, seq and the counts under the echo labels', () => {
    const req = packet('rtp', { seq: 12 });
    const echo = echoOf(req);
    const n = echo.length;
    expect(n).toBe(req.length);
    expect(echo.subarray(0, n - 32).equals(req.subarray(0, n - 32))).toBe(true);
    const tag = echo.subarray(n - 16);
    const mask = createHmac('sha256', KEY).update('callprobe media echo mask v1').update(tag).digest().subarray(0, 16);
    const clear = Buffer.from(echo.subarray(n - 32, n - 16).map((b, i) => b ^ (mask[i] as number)));
    expect(clear.toString('hex')).toBe('01020304' + '0000000c' + '0000000d' + '000006c5');
    const expected = createHmac('sha256', KEY).update('callprobe media echo v1').update(echo.subarray(0, n - 32)).update(clear).digest().subarray(0, 16);
    expect(tag.equals(expected)).toBe(true);
  });

  it.each(MEDIA_SHAPES)('%s: decodeMediaEcho reads the counts; the control comes back inverted as a whole', (shape) => {
    const req = packet(shape, { seq: 3 });
    const echo = echoOf(req, { packets: 4, bytes: 600 });
    expect(decodeMediaEcho(echo, KEY)).toEqual({
      flowId: FLOW,
      seq: 3,
      received: { packets: 4, bytes: 600 },
      shape,
      controlOf: shape === 'random' ? 'whatsapp' : null,
      polarity: shape === 'random' ? 'inverted' : 'plain',
      length: req.length,
    });
    if (shape === 'random') expect(echo.subarray(0, 4).equals(req.subarray(0, 4))).toBe(true);
  });

  it('an echo is no request, a request is no echo (a path that sends our packet back verbatim is not the reflector)', () => {
    const req = packet('whatsapp');
    expect(verifyMediaRequest(echoOf(req), KEY)).toBeNull();
    expect(failureCodeOf(() => decodeMediaEcho(req, KEY))).toBe('proto_mismatch');
    expect(failureCodeOf(() => decodeMediaEcho(echoOf(req), OTHER_KEY))).toBe('proto_mismatch');
  });

  it('saturates counts at 2^32 - 1', () => {
    expect(decodeMediaEcho(echoOf(packet('rtp'), { packets: 2 ** 40, bytes: -5 }), KEY).received).toEqual({ packets: 0xffffffff, bytes: 0 });
  });
});

describe('decodeMediaPacket fuzz', () => {
  it('random, truncated and mutated input yields proto_malformed or proto_mismatch, nothing else', () => {
    const rng = deterministicRng('media fuzz');
    const valid = MEDIA_SHAPES.map((shape) => packet(shape));
    const counts: Record<string, number> = {};
    for (let i = 0; i < 2000; i++) {
      const r = Buffer.from(rng(4));
      const kind = (r[0] as number) % 3;
      let input: Uint8Array;
      if (kind === 0) input = rng(((r[1] as number) << 2) % 1400);
      else {
        const v = valid[(r[1] as number) % valid.length] as Buffer;
        if (kind === 1) input = v.subarray(0, r.readUInt16BE(2) % v.length);
        else {
          const m = Buffer.from(v);
          const at = r.readUInt16BE(2) % m.length;
          m[at] = (m[at] as number) ^ (1 + ((r[1] as number) % 255));
          input = m;
        }
      }
      const code = failureCodeOf(() => decodeMediaPacket(input, KEY));
      const expected = input.length < MIN_MEDIA_PACKET_LENGTH || input.length > MAX_MEDIA_PACKET_LENGTH ? 'proto_malformed' : 'proto_mismatch';
      expect(code).toBe(expected);
      expect(verifyTag(input, KEY)).toBeNull();
      expect(failureCodeOf(() => decodeMediaEcho(input, KEY))).toBe(expected);
      counts[code] = (counts[code] ?? 0) + 1;
    }
    expect(counts.proto_malformed).toBeGreaterThan(100);
    expect(counts.proto_mismatch).toBeGreaterThan(100);
  });
});

describe('randomness', () => {
  it('opusLikeSize stays within 60..160 and reaches both ends', () => {
    const rng = deterministicRng('sizes');
    const sizes = Array.from({ length: 2000 }, () => opusLikeSize(rng));
    expect(Math.min(...sizes)).toBe(60);
    expect(Math.max(...sizes)).toBe(160);
  });

  it('deterministicRng is a stream: chunking does not change the bytes', () => {
    const a = deterministicRng('x');
    const b = deterministicRng('x');
    const joined = Buffer.concat([Buffer.from(a(10)), Buffer.from(a(30)), Buffer.from(a(1))]);
    expect(joined.equals(Buffer.from(b(41)))).toBe(true);
    expect(Buffer.from(deterministicRng('y')(41)).equals(joined)).toBe(false);
  });

  it('uniformInt does not hang on a broken RNG', () => {
    const stuck = (n: number) => new Uint8Array(n).fill(0xff);
    expect(uniformInt(stuck, 60, 160)).toBeGreaterThanOrEqual(60);
    expect(() => uniformInt(cryptoRng, 5, 4)).toThrow(RangeError);
  });

  it('cryptoRng returns the bytes asked for', () => {
    expect(cryptoRng(17).length).toBe(17);
  });
});
