import { describe, expect, it } from 'vitest';
import { deterministicRng } from '../../src/protocol/media-packet.js';
import { decodeRtp, encodeRtp, rtpHeaderLength } from '../../src/protocol/rtp.js';
import { failureCodeOf } from '../helpers/bytes.js';

/**
 * pion/rtp packet_test.go TestBasic (also the seed of its FuzzUnmarshalPacket): V=2, X=1, M=1,
 * PT 96, seq 27023, ts 3653407706, SSRC 476325762, extension profile 1 with one word FF FF FF FF,
 * payload 98 36 BE 88 9E.
 */
const PION_BASIC = Buffer.from([
  0x90, 0xe0, 0x69, 0x8f, 0xd9, 0xc2, 0x93, 0xda, 0x1c, 0x64, 0x27, 0x82, 0x00, 0x01, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0x98, 0x36, 0xbe, 0x88, 0x9e,
]);

describe('decodeRtp', () => {
  it('reads pion/rtp TestBasic field by field', () => {
    const p = decodeRtp(PION_BASIC);
    expect(p.version).toBe(2);
    expect(p.padding).toBe(false);
    expect(p.header.marker).toBe(true);
    expect(p.header.payloadType).toBe(96);
    expect(p.header.sequenceNumber).toBe(27023);
    expect(p.header.timestamp).toBe(3653407706);
    expect(p.header.ssrc).toBe(476325762);
    expect(p.header.csrc).toEqual([]);
    expect(p.header.extension?.profile).toBe(1);
    expect(Buffer.from(p.header.extension?.data ?? []).toString('hex')).toBe('ffffffff');
    expect(p.headerLength).toBe(20);
    expect(Buffer.from(p.payload).toString('hex')).toBe('9836be889e');
    expect(p.paddingLength).toBe(0);
  });

  it('reads a CSRC list and strips padding (RFC 3550 §5.1)', () => {
    const buf = encodeRtp({ marker: false, payloadType: 0, sequenceNumber: 1, timestamp: 2, ssrc: 3, csrc: [0xaabbccdd, 7] }, Buffer.from('abcd'), 4);
    expect(buf.toString('hex')).toBe('a2000001' + '00000002' + '00000003' + 'aabbccdd' + '00000007' + '61626364' + '00000004');
    const p = decodeRtp(buf);
    expect(p.padding).toBe(true);
    expect(p.header.csrc).toEqual([0xaabbccdd, 7]);
    expect(p.headerLength).toBe(20);
    expect(Buffer.from(p.payload).toString()).toBe('abcd');
    expect(p.paddingLength).toBe(4);
  });

  it.each([
    ['shorter than the fixed header', '80e0698fd9c293da1c6427'],
    ['version 1', '40e0698fd9c293da1c642782'],
    ['version 3', 'c0e0698fd9c293da1c642782'],
    ['CSRC list truncated (CC=2, one word)', '82e0698fd9c293da1c64278200000001'],
    ['extension header truncated', '90e0698fd9c293da1c6427820001'],
    ['extension longer than the packet (2 words, 1 present)', '90e0698fd9c293da1c64278200010002ffffffff'],
    ['padding count zero', 'a0e0698fd9c293da1c642782aabb00'],
    ['padding count beyond the payload', 'a0e0698fd9c293da1c642782aabb04'],
    ['padding set with no room for its count', 'a0e0698fd9c293da1c642782'],
  ])('rejects %s with proto_malformed', (_name, hex) => {
    expect(failureCodeOf(() => decodeRtp(Buffer.from(hex, 'hex')))).toBe('proto_malformed');
  });

  it('accepts a padding count that takes the whole payload', () => {
    const p = decodeRtp(Buffer.from('a0e0698fd9c293da1c642782000003', 'hex'));
    expect(p.payload.length).toBe(0);
    expect(p.paddingLength).toBe(3);
  });
});

describe('encodeRtp', () => {
  it('reproduces pion/rtp TestBasic byte for byte', () => {
    const out = encodeRtp(
      {
        marker: true,
        payloadType: 96,
        sequenceNumber: 27023,
        timestamp: 3653407706,
        ssrc: 476325762,
        extension: { profile: 1, data: Buffer.from('ffffffff', 'hex') },
      },
      Buffer.from('9836be889e', 'hex'),
    );
    expect(out.equals(PION_BASIC)).toBe(true);
  });

  it('writes the 16-byte WhatsApp speech header: 0x90, PT 120, profile 0xDEBE, no words', () => {
    const h = { marker: true, payloadType: 120, sequenceNumber: 1, timestamp: 0, ssrc: 0x11223344, extension: { profile: 0xdebe, data: new Uint8Array(0) } };
    expect(rtpHeaderLength(h)).toBe(16);
    expect(encodeRtp(h, new Uint8Array(0)).toString('hex')).toBe('90f80001' + '00000000' + '11223344' + 'debe0000');
  });

  it('round-trips headers with every optional part', () => {
    const header = {
      marker: false,
      payloadType: 111,
      sequenceNumber: 0xffff,
      timestamp: 0xffffffff,
      ssrc: 0,
      csrc: [1, 2, 3],
      extension: { profile: 0xbede, data: Buffer.from('1122334455667788', 'hex') },
    };
    const p = decodeRtp(encodeRtp(header, Buffer.from('payload'), 7));
    expect(p.header).toEqual({ ...header, extension: { profile: 0xbede, data: expect.anything() } });
    expect(Buffer.from(p.header.extension?.data ?? []).toString('hex')).toBe('1122334455667788');
    expect(Buffer.from(p.payload).toString()).toBe('payload');
    expect(p.paddingLength).toBe(7);
  });

  it.each([
    ['payload type 128', { payloadType: 128 }],
    ['sequence 65536', { sequenceNumber: 65536 }],
    ['negative timestamp', { timestamp: -1 }],
    ['SSRC 2^32', { ssrc: 2 ** 32 }],
    ['16 CSRCs', { csrc: Array.from({ length: 16 }, () => 1) }],
    ['extension body not whole words', { extension: { profile: 1, data: new Uint8Array(3) } }],
  ])('refuses %s as a bug (RangeError)', (_name, patch) => {
    const base = { marker: false, payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0 };
    expect(() => encodeRtp({ ...base, ...patch }, new Uint8Array(0))).toThrow(RangeError);
  });
});

describe('decodeRtp fuzz', () => {
  it('random, truncated and mutated input yields a packet or proto_malformed, nothing else', () => {
    const rng = deterministicRng('rtp fuzz');
    const valid = [
      PION_BASIC,
      encodeRtp({ marker: false, payloadType: 0, sequenceNumber: 1, timestamp: 2, ssrc: 3, csrc: [4, 5] }, Buffer.from('xyz'), 5),
    ];
    let malformed = 0;
    for (let i = 0; i < 3000; i++) {
      let input: Uint8Array;
      const r = rng(3);
      const kind = (r[0] as number) % 3;
      if (kind === 0) input = rng((r[1] as number) % 48);
      else {
        const v = valid[(r[1] as number) % valid.length] as Buffer;
        if (kind === 1) input = v.subarray(0, (r[2] as number) % (v.length + 1));
        else {
          const m = Buffer.from(v);
          m[(r[2] as number) % m.length] = rng(1)[0] as number;
          input = m;
        }
      }
      const code = failureCodeOf(() => decodeRtp(input));
      expect(['none', 'proto_malformed']).toContain(code);
      if (code === 'proto_malformed') malformed++;
    }
    // The loop must actually exercise the error paths.
    expect(malformed).toBeGreaterThan(500);
  });
});
