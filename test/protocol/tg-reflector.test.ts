import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import { REFLECTOR_HELLO_LENGTH, decodeReflectorReply, encodeReflectorHello } from '../../src/protocol/tg-reflector.js';

const hex = (h: string) => Buffer.from(h.replace(/\s+/g, ''), 'hex');
const failureOf = (f: () => unknown): ProbeFailure => {
  try {
    f();
  } catch (err) {
    return err as ProbeFailure;
  }
  throw new Error('did not throw');
};

describe('reflector hello', () => {
  it('is byte for byte the tgcalls hellos captured on the wire (12 tag bytes, local tag, FF×12, FE FF FF FF, 123 big-endian)', () => {
    // Tolian82/os-zapret2-restyle docs/verification/evidence/2026-09-20-telegram-voice-current-opnsense-baseline.md
    const captured = ['00578f5df7eb3781f05cabef243fdfa0fffffffffffffffffffffffffeffffff000000000000007b', '01578f5df7eb3781f05cabef2a78b9a9fffffffffffffffffffffffffeffffff000000000000007b'];
    for (const wire of captured) {
      const b = hex(wire);
      const hello = encodeReflectorHello({ style: 'tgcalls', peerTag: Buffer.concat([b.subarray(0, 12), Buffer.alloc(4)]), localTag: b.subarray(12, 16) });
      expect(hello.bytes.toString('hex')).toBe(wire);
      expect(hello.bytes.length).toBe(REFLECTOR_HELLO_LENGTH);
    }
  });

  it('libtgvoip sends its whole 16-byte tag and a random query id (SendUdpPing: int32 LE -1, -1, -1, -2)', () => {
    const hello = encodeReflectorHello({ style: 'libtgvoip', peerTag: hex('000102030405060708090a0b0c0d0e0f'), queryId: hex('0102030405060708') });
    expect(hello.bytes.toString('hex')).toBe('000102030405060708090a0b0c0d0e0f' + 'ff'.repeat(12) + 'feffffff' + '0102030405060708');
  });

  it('draws a fresh random tag, and a non-zero local tag, when none is given', () => {
    const a = encodeReflectorHello({ style: 'tgcalls' });
    const b = encodeReflectorHello({ style: 'tgcalls' });
    expect(a.tag.equals(b.tag)).toBe(false);
    expect(a.tag.subarray(12).some((x) => x !== 0)).toBe(true);
  });
});

describe('reflector reply', () => {
  const hello = encodeReflectorHello({ style: 'libtgvoip', peerTag: hex('000102030405060708090a0b0c0d0e0f'), queryId: hex('1122334455667788') });
  // libtgvoip tests/MockReflector.cpp UdpReflectorSelfInfo, packed and little-endian:
  // tag echo | FF×12 | magic C7 72 15 C0 | date | query id | ::ffff:198.18.1.2 | port 40123 (u32 LE).
  const selfInfo = hex(
    '000102030405060708090a0b0c0d0e0f' + 'ff'.repeat(12) + 'c77215c0' + '006e2d69' + '1122334455667788' + '00'.repeat(10) + 'ffff' + 'c6120102' + 'bb9c0000',
  );

  it('decodes a self-info: the reflector clock, the query id echoed, the address and port it saw us at', () => {
    expect(selfInfo.length).toBe(64);
    expect(decodeReflectorReply(selfInfo, hello)).toEqual({ kind: 'self-info', date: 0x692d6e00, queryIdEchoed: true, address: '198.18.1.2', port: 40123 });
  });

  it('an IPv6 vantage is an IPv6 address', () => {
    const v6 = Buffer.from(selfInfo);
    hex('20010db8000000000000000000000001').copy(v6, 44);
    expect(decodeReflectorReply(v6, hello)).toMatchObject({ address: '2001:db8::1' });
  });

  it('any other special packet echoing our tag is an answer too; a packet for our tag without the marker is relayed data', () => {
    const special = Buffer.from(selfInfo.subarray(0, 40));
    special.writeUInt32LE(0x27d9371c, 28); // TLID_UDP_REFLECTOR_PEER_INFO
    expect(decodeReflectorReply(special, hello)).toEqual({ kind: 'special', tlid: 0x27d9371c });
    expect(decodeReflectorReply(Buffer.concat([hello.tag, Buffer.alloc(24, 7)]), hello)).toEqual({ kind: 'data', length: 40 });
  });

  it('a reply with another tag is proto_mismatch; a self-info cut short is proto_malformed', () => {
    const other = Buffer.from(selfInfo);
    other[3] = other[3]! ^ 1;
    expect(failureOf(() => decodeReflectorReply(other, hello)).code).toBe('proto_mismatch');
    expect(failureOf(() => decodeReflectorReply(hex('0001'), hello)).code).toBe('proto_mismatch');
    const cut = failureOf(() => decodeReflectorReply(selfInfo.subarray(0, 50), hello));
    expect(cut.code).toBe('proto_malformed');
    expect(cut.evidence).toEqual({ replyLength: 50 });
  });

  it('tgcalls compares only the first 12 tag bytes (the last 4 are its local tag)', () => {
    const tg = encodeReflectorHello({ style: 'tgcalls', peerTag: hex('000102030405060708090a0b0c0d0e0f'), localTag: hex('a1b2c3d4') });
    const reply = Buffer.from(selfInfo);
    hex('deadbeef').copy(reply, 12);
    expect(decodeReflectorReply(reply, tg)).toMatchObject({ kind: 'self-info', queryIdEchoed: false });
  });

  it('never throws anything but a ProbeFailure on any truncation', () => {
    for (let n = 0; n <= selfInfo.length; n++) {
      try {
        decodeReflectorReply(selfInfo.subarray(0, n), hello);
      } catch (err) {
        expect(err).toBeInstanceOf(ProbeFailure);
      }
    }
  });
});
