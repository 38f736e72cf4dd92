/**
 * TURN codec tests: method types, the attributes a TURN client sends and reads, ChannelData
 * framing over UDP and streams, long-term credentials, the error-code mapping, and fuzzing of
 * the ChannelData and stream-framing decoders. The RFC vectors for the key derivation itself
 * (RFC 5769 §2.4, RFC 8489 Appendix B.1) are checked in stun.test.ts.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import { buildMessage, encodeMessageType, findAttribute, newTransactionId, parseMessage, verifyFingerprint, verifyIntegrity } from '../../src/protocol/stun.js';
import * as A from '../../src/protocol/stun-attributes.js';
import { ATTR } from '../../src/protocol/stun-attributes.js';
import {
  CHANNEL_MAX,
  CHANNEL_MIN,
  decodeChannelData,
  encodeChannelData,
  isChannelData,
  longTermKey,
  METHOD,
  methodName,
  saslprep,
  shortTermKey,
  streamFrameLength,
  turnErrorFailure,
  userhashOf,
} from '../../src/protocol/turn.js';
import { expectMalformed, fromHex, mulberry32, randomBytesFrom } from '../helpers/bytes.js';

describe('TURN methods (RFC 8656 §17)', () => {
  it('have the registered numbers and message types', () => {
    expect(METHOD).toEqual({ BINDING: 1, ALLOCATE: 3, REFRESH: 4, SEND: 6, DATA: 7, CREATE_PERMISSION: 8, CHANNEL_BIND: 9 });
    expect(encodeMessageType(METHOD.ALLOCATE, 'request')).toBe(0x0003);
    expect(encodeMessageType(METHOD.ALLOCATE, 'success')).toBe(0x0103);
    expect(encodeMessageType(METHOD.ALLOCATE, 'error')).toBe(0x0113);
    expect(encodeMessageType(METHOD.REFRESH, 'request')).toBe(0x0004);
    expect(encodeMessageType(METHOD.SEND, 'indication')).toBe(0x0016);
    expect(encodeMessageType(METHOD.DATA, 'indication')).toBe(0x0017);
    expect(encodeMessageType(METHOD.CREATE_PERMISSION, 'request')).toBe(0x0008);
    expect(encodeMessageType(METHOD.CHANNEL_BIND, 'request')).toBe(0x0009);
    expect(encodeMessageType(METHOD.CHANNEL_BIND, 'success')).toBe(0x0109);
  });

  it('have names for evidence', () => {
    expect([1, 3, 4, 6, 7, 8, 9].map(methodName)).toEqual(['Binding', 'Allocate', 'Refresh', 'Send', 'Data', 'CreatePermission', 'ChannelBind']);
    expect(methodName(0x00a)).toBe('0x00a');
  });
});

describe('TURN attributes (RFC 8656 §18)', () => {
  const id = fromHex('0102030405060708090a0b0c');

  it('an authenticated Allocate request: exact bytes up to MESSAGE-INTEGRITY, verifiable', () => {
    const key = longTermKey('alice', 'lab', 'pw');
    const bytes = buildMessage({
      method: METHOD.ALLOCATE,
      class: 'request',
      transactionId: id,
      attributes: [A.requestedTransport(), A.lifetime(600), A.username('alice'), A.realm('lab'), A.nonce('abcd')],
      integrity: key,
      fingerprint: true,
    });
    expect(bytes.length).toBe(20 + 8 + 8 + 12 + 8 + 8 + 24 + 8);
    expect(bytes.subarray(0, 20 + 8 + 8 + 12 + 8 + 8).toString('hex')).toBe(
      '0003' + '004c' + '2112a442' + '0102030405060708090a0b0c' +
        '0019000411000000' + // REQUESTED-TRANSPORT: UDP (17), 3 RFFU bytes
        '000d000400000258' + // LIFETIME 600
        '00060005616c696365000000' + // USERNAME "alice" + 3 padding bytes
        '001400036c616200' + // REALM "lab" + 1 padding byte
        '0015000461626364', // NONCE "abcd"
    );
    const msg = parseMessage(bytes);
    expect(A.getRequestedTransport(msg)).toBe(17);
    expect(A.getLifetime(msg)).toBe(600);
    expect(verifyIntegrity(msg, key)).toBe(true);
    expect(verifyFingerprint(msg)).toBe(true);
  });

  it('an Allocate success response: relayed and mapped addresses, lifetime', () => {
    const relayed = { family: 'IPv4', address: '198.18.2.2', port: 49152 } as const;
    const mapped = { family: 'IPv4', address: '198.18.1.2', port: 40000 } as const;
    const msg = parseMessage(
      buildMessage({
        method: METHOD.ALLOCATE,
        class: 'success',
        transactionId: id,
        attributes: [A.xorRelayedAddress(relayed), A.xorMappedAddress(mapped), A.lifetime(3600)],
      }),
    );
    expect(A.getXorRelayedAddress(msg)).toEqual(relayed);
    expect(A.getXorMappedAddress(msg)).toEqual(mapped);
    expect(A.getLifetime(msg)).toBe(3600);
    // XOR-RELAYED-ADDRESS 198.18.2.2:49152 XOR'ed with the cookie: port c000^2112, address c6120202^2112a442.
    expect(findAttribute(msg, ATTR.XOR_RELAYED_ADDRESS)?.value.toString('hex')).toBe('0001e112e700a640');
  });

  it('CreatePermission with several XOR-PEER-ADDRESS, ChannelBind with CHANNEL-NUMBER', () => {
    const peers = [
      { family: 'IPv4', address: '198.18.2.2', port: 5000 },
      { family: 'IPv6', address: '2001:db8::2', port: 5001 },
    ] as const;
    const perm = parseMessage(buildMessage({ method: METHOD.CREATE_PERMISSION, class: 'request', transactionId: id, attributes: peers.map(A.xorPeerAddress) }));
    expect(A.getXorPeerAddresses(perm)).toEqual(peers);
    const bind = buildMessage({ method: METHOD.CHANNEL_BIND, class: 'request', transactionId: id, attributes: [A.channelNumber(0x4000), A.xorPeerAddress(peers[0])] });
    expect(bind.subarray(20, 28).toString('hex')).toBe('000c000440000000');
    expect(A.getChannelNumber(parseMessage(bind))).toBe(0x4000);
  });

  it('Send and Data indications carry DATA, padded', () => {
    const payload = Buffer.from('hello');
    const send = buildMessage({
      method: METHOD.SEND,
      class: 'indication',
      transactionId: id,
      attributes: [A.xorPeerAddress({ family: 'IPv4', address: '198.18.2.2', port: 5000 }), A.data(payload), A.dontFragment()],
    });
    const msg = parseMessage(send);
    expect(msg.class).toBe('indication');
    expect(A.getData(msg)?.equals(payload)).toBe(true);
    expect(findAttribute(msg, ATTR.DATA)?.offset).toBe(32);
    expect(send.subarray(32, 44).toString('hex')).toBe('0013000568656c6c6f000000');
    expect(send.subarray(44, 48).toString('hex')).toBe('001a0000');
  });

  it('Refresh with LIFETIME 0 releases the allocation', () => {
    const b = buildMessage({ method: METHOD.REFRESH, class: 'request', transactionId: id, attributes: [A.lifetime(0)] });
    expect(b.toString('hex')).toBe('000400082112a442' + '0102030405060708090a0b0c' + '000d000400000000');
  });

  it('REQUESTED-ADDRESS-FAMILY, PASSWORD-ALGORITHMS, ALTERNATE-DOMAIN', () => {
    const msg = parseMessage(
      buildMessage({
        method: METHOD.ALLOCATE,
        class: 'error',
        transactionId: id,
        attributes: [
          A.requestedAddressFamily('IPv6'),
          A.passwordAlgorithms([A.PASSWORD_ALGORITHM.SHA256, { algorithm: A.PASSWORD_ALGORITHM.MD5, parameters: Buffer.from([9]) }]),
          A.alternateDomain('turn.example'),
        ],
      }),
    );
    expect(findAttribute(msg, ATTR.REQUESTED_ADDRESS_FAMILY)?.value.toString('hex')).toBe('02000000');
    expect(A.getPasswordAlgorithms(msg)).toEqual([
      { algorithm: 2, parameters: Buffer.alloc(0) },
      { algorithm: 1, parameters: Buffer.from([9]) },
    ]);
    expect(A.getAlternateDomain(msg)).toBe('turn.example');
  });

  it('raises proto_malformed for mis-sized fixed attributes', () => {
    for (const [type, get] of [
      [ATTR.LIFETIME, A.getLifetime],
      [ATTR.REQUESTED_TRANSPORT, A.getRequestedTransport],
      [ATTR.CHANNEL_NUMBER, A.getChannelNumber],
      [ATTR.USERHASH, A.getUserhash],
      [ATTR.PASSWORD_ALGORITHM, A.getPasswordAlgorithm],
    ] as const) {
      const msg = parseMessage(buildMessage({ method: METHOD.ALLOCATE, class: 'success', transactionId: id, attributes: [{ type, value: Buffer.alloc(3) }] }));
      expectMalformed(() => get(msg));
    }
    const overrun = parseMessage(
      buildMessage({ method: 3, class: 'success', transactionId: id, attributes: [{ type: ATTR.PASSWORD_ALGORITHMS, value: fromHex('0001 0008 0000') }] }),
    );
    expectMalformed(() => A.getPasswordAlgorithms(overrun));
  });
});

describe('ChannelData (RFC 8656 §12.4-12.5)', () => {
  it('encodes for UDP without padding and for TCP/TLS padded to 4 bytes', () => {
    const data = Buffer.from([1, 2, 3]);
    expect(encodeChannelData(0x4001, data).toString('hex')).toBe('40010003010203');
    expect(encodeChannelData(0x4001, data, { stream: true }).toString('hex')).toBe('4001000301020300');
    expect(encodeChannelData(0x4fff, Buffer.alloc(0)).toString('hex')).toBe('4fff0000');
    expect(encodeChannelData(0x4000, Buffer.alloc(4, 0xaa), { stream: true }).toString('hex')).toBe('40000004aaaaaaaa');
  });

  it('decodes UDP datagrams with or without padding, streams only with it', () => {
    expect(decodeChannelData(fromHex('40010003010203'))).toEqual({ channel: 0x4001, data: Buffer.from([1, 2, 3]) });
    expect(decodeChannelData(fromHex('4001000301020300'))).toEqual({ channel: 0x4001, data: Buffer.from([1, 2, 3]) });
    expect(decodeChannelData(fromHex('4001000301020300'), { stream: true })).toEqual({ channel: 0x4001, data: Buffer.from([1, 2, 3]) });
    expectMalformed(() => decodeChannelData(fromHex('40010003010203'), { stream: true }));
    expectMalformed(() => decodeChannelData(fromHex('400100030102030000')));
  });

  it('rejects channels outside 0x4000-0x4FFF and lengths beyond the buffer', () => {
    expect(CHANNEL_MIN).toBe(0x4000);
    expect(CHANNEL_MAX).toBe(0x4fff);
    expect(() => encodeChannelData(0x3fff, Buffer.alloc(1))).toThrow(RangeError);
    expect(() => encodeChannelData(0x5000, Buffer.alloc(1))).toThrow(RangeError);
    expect(() => encodeChannelData(0x4000, Buffer.alloc(0x10000))).toThrow(RangeError);
    expectMalformed(() => decodeChannelData(fromHex('5000 0001 00')));
    expectMalformed(() => decodeChannelData(fromHex('3fff 0001 00')));
    expect(expectMalformed(() => decodeChannelData(fromHex('4000 ffff 00'))).message).toBe('ChannelData length says 65535 bytes, 1 present');
    expectMalformed(() => decodeChannelData(fromHex('4000 00')));
  });

  it('isChannelData follows RFC 7983 (first byte 64-79)', () => {
    expect(isChannelData(fromHex('40000000'))).toBe(true);
    expect(isChannelData(fromHex('4f000000'))).toBe(true);
    expect(isChannelData(fromHex('50000000'))).toBe(false);
    expect(isChannelData(fromHex('00010000'))).toBe(false);
    expect(isChannelData(fromHex('4000'))).toBe(false);
  });
});

describe('stream framing (TURN over TCP/TLS)', () => {
  it('cuts a byte stream of STUN messages and padded ChannelData into frames', () => {
    const stun1 = buildMessage({ method: METHOD.ALLOCATE, class: 'success', transactionId: newTransactionId(), attributes: [A.lifetime(600)] });
    const chan = encodeChannelData(0x4000, Buffer.from('hello'), { stream: true });
    const stun2 = buildMessage({ method: METHOD.REFRESH, class: 'success', transactionId: newTransactionId(), attributes: [A.software('x')] });
    let stream = Buffer.concat([stun1, chan, stun2]);
    const frames: Array<{ kind: string; bytes: Buffer }> = [];
    for (;;) {
      const f = streamFrameLength(stream);
      if (!f || stream.length < f.length) break;
      frames.push({ kind: f.kind, bytes: stream.subarray(0, f.length) });
      stream = stream.subarray(f.length);
    }
    expect(stream.length).toBe(0);
    expect(frames.map((f) => f.kind)).toEqual(['stun', 'channel-data', 'stun']);
    expect(frames.map((f) => f.bytes.length)).toEqual([28, 12, 28]);
    expect(A.getLifetime(parseMessage(frames[0]?.bytes as Buffer))).toBe(600);
    expect(decodeChannelData(frames[1]?.bytes as Buffer, { stream: true }).data.toString()).toBe('hello');
    expect(A.getSoftware(parseMessage(frames[2]?.bytes as Buffer))).toBe('x');
  });

  it('waits for 4 bytes, and rejects a first byte that is neither STUN nor ChannelData', () => {
    expect(streamFrameLength(fromHex('0001 00'))).toBeUndefined();
    expect(streamFrameLength(fromHex('4000 0005'))).toEqual({ kind: 'channel-data', length: 12 });
    expect(streamFrameLength(fromHex('0101 0010'))).toEqual({ kind: 'stun', length: 36 });
    expect(expectMalformed(() => streamFrameLength(fromHex('8000 0000'))).message).toBe('neither STUN nor ChannelData: first byte 0x80');
    expectMalformed(() => streamFrameLength(fromHex('5000 0000')));
    expectMalformed(() => streamFrameLength(fromHex('1603 0300'))); // a TLS record where TURN was expected
  });
});

describe('credentials (RFC 8489 §9)', () => {
  it('long-term key is MD5 or SHA-256 of username:realm:password', () => {
    expect(longTermKey('user', 'realm', 'pass').equals(createHash('md5').update('user:realm:pass').digest())).toBe(true);
    expect(longTermKey('user', 'realm', 'pass', A.PASSWORD_ALGORITHM.SHA256).equals(createHash('sha256').update('user:realm:pass').digest())).toBe(true);
    expect(longTermKey('user', 'realm', 'pass').length).toBe(16);
    expect(longTermKey('user', 'realm', 'pass', A.PASSWORD_ALGORITHM.SHA256).length).toBe(32);
    expect(() => longTermKey('u', 'r', 'p', 0x0003)).toThrow(RangeError);
  });

  it('takes REALM as the bytes the server sent, so a non-UTF-8 realm still derives the right key', () => {
    const realmBytes = Buffer.from([0x6c, 0xff, 0x62]);
    const expected = createHash('md5').update(Buffer.concat([Buffer.from('u:'), realmBytes, Buffer.from(':p')])).digest();
    expect(longTermKey('u', realmBytes, 'p').equals(expected)).toBe(true);
  });

  it('USERHASH is SHA-256 of username:realm (matches RFC 8489 B.1)', () => {
    expect(userhashOf('\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9', 'example.org').toString('hex')).toBe(
      '4a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704',
    );
  });

  it('short-term key is the password', () => {
    expect(shortTermKey('VOkJxbRl1RmTxUk/WvJxBt').toString()).toBe('VOkJxbRl1RmTxUk/WvJxBt');
  });

  it('saslprep maps spaces and removes ignorable characters, leaves ASCII alone', () => {
    expect(saslprep('The\u00ADM\u00AAtr\u2168')).toBe('TheMatrIX');
    expect(saslprep('a\u00A0b\u3000c')).toBe('a b c');
    expect(saslprep('a\u200Bb\uFEFFc')).toBe('abc');
    expect(saslprep('plain ASCII p@ss')).toBe('plain ASCII p@ss');
  });
});

describe('error code -> failure taxonomy (docs/architecture.md#failure-taxonomy)', () => {
  it('maps TURN errors to their codes', () => {
    expect(turnErrorFailure(401, false)).toBe('proto_error');
    expect(turnErrorFailure(401, true)).toBe('turn_unauthorized');
    expect(turnErrorFailure(441, false)).toBe('turn_unauthorized');
    expect(turnErrorFailure(403, true)).toBe('turn_forbidden');
    expect(turnErrorFailure(486, true)).toBe('turn_quota');
    expect(turnErrorFailure(508, true)).toBe('turn_insufficient_capacity');
    expect(turnErrorFailure(438, true)).toBe('proto_error');
    expect(turnErrorFailure(437, true)).toBe('proto_error');
    expect(turnErrorFailure(500, false)).toBe('proto_error');
  });
});

describe('fuzz', () => {
  const onlyMalformed = (fn: () => unknown): 'ok' | 'malformed' => {
    try {
      fn();
      return 'ok';
    } catch (err) {
      if (!(err instanceof ProbeFailure) || err.code !== 'proto_malformed') throw err;
      return 'malformed';
    }
  };

  it('decodeChannelData and streamFrameLength on 5000 random buffers', () => {
    const rand = mulberry32(0x7e11);
    const seen = { ok: 0, malformed: 0 };
    for (let i = 0; i < 5000; i++) {
      const b = randomBytesFrom(rand, Math.floor(rand() * 24));
      // Bias the first byte toward ChannelData so decoding gets past the channel check.
      if (b.length > 0 && rand() < 0.6) b[0] = 0x40 | Math.floor(rand() * 16);
      if (b.length > 3 && rand() < 0.5) b.writeUInt16BE(Math.floor(rand() * (b.length + 2)), 2);
      seen[onlyMalformed(() => decodeChannelData(b))]++;
      seen[onlyMalformed(() => decodeChannelData(b, { stream: true }))]++;
      onlyMalformed(() => streamFrameLength(b));
    }
    expect(seen.ok).toBeGreaterThan(100);
    expect(seen.malformed).toBeGreaterThan(100);
  });

  it('every truncation and byte change of TURN messages reaches the TURN getters safely', () => {
    const rand = mulberry32(0x7e12);
    const id = newTransactionId();
    const samples = [
      buildMessage({
        method: METHOD.ALLOCATE,
        class: 'success',
        transactionId: id,
        attributes: [
          A.xorRelayedAddress({ family: 'IPv6', address: '2001:db8::9', port: 50000 }),
          A.xorMappedAddress({ family: 'IPv4', address: '198.18.1.2', port: 1 }),
          A.lifetime(600),
        ],
        integrity: Buffer.from('k'),
        fingerprint: true,
      }),
      buildMessage({ method: METHOD.ALLOCATE, class: 'error', transactionId: id, attributes: [A.errorCode(401, 'Unauthorized'), A.realm('r'), A.nonce('n')] }),
      buildMessage({ method: METHOD.DATA, class: 'indication', transactionId: id, attributes: [A.xorPeerAddress({ family: 'IPv4', address: '1.2.3.4', port: 5 }), A.data(Buffer.from('xyz'))] }),
    ];
    const getters = [A.getXorRelayedAddress, A.getXorMappedAddress, A.getXorPeerAddresses, A.getLifetime, A.getErrorCode, A.getRealm, A.getNonce, A.getData, A.getChannelNumber];
    let parsed = 0;
    const run = (b: Buffer): void => {
      if (onlyMalformed(() => parseMessage(b)) === 'malformed') return;
      parsed++;
      const msg = parseMessage(b);
      for (const g of getters) onlyMalformed(() => g(msg));
      verifyIntegrity(msg, Buffer.from('k'));
      verifyFingerprint(msg);
    };
    for (const s of samples) {
      for (let n = 0; n <= s.length; n++) run(s.subarray(0, n));
      for (let i = 0; i < s.length; i++) {
        const m = Buffer.from(s);
        m[i] = Math.floor(rand() * 256);
        run(m);
      }
    }
    expect(parsed).toBeGreaterThan(samples.length);
  });
});
