import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import {
  NONCE_LENGTH,
  UNENCRYPTED_HEADER_LENGTH,
  clientMessageId,
  decodeReqPqMulti,
  decodeResPQ,
  decodeUnencryptedMessage,
  encodeReqPqMulti,
  encodeResPQ,
  encodeUnencryptedMessage,
  fingerprintHex,
  serverResponseMessageId,
  throwIfTransportError,
} from '../../src/protocol/mtproto.js';
import { TlWriter } from '../../src/protocol/tl.js';
import { failureOf, fromHex, seededBytes, toHex } from '../helpers/bytes.js';

/**
 * core.telegram.org/mtproto/samples-auth_key, "1. request req_pq_multi" and "2. response resPQ"
 * (transport headers omitted). The page is regenerated from time to time with fresh nonces; these
 * are two stored snapshots, copied byte for byte.
 *
 * Snapshot A (https://core.telegram.org./mtproto/samples-auth_key): the resPQ's message_data_length
 * says 0x90 (144) but the body shown is 80 bytes.
 */
const SAMPLE_A = {
  request: fromHex(`
    00 00 00 00 00 00 00 00 2C A3 0D 00 0D 0D C3 66
    14 00 00 00 F1 8E 7E BE AC 7E C6 49 66 2E CF 3C
    F3 BA 99 1B 9D 8D AB D5`),
  response: fromHex(`
    00 00 00 00 00 00 00 00 01 74 FF E0 0D 0D C3 66
    90 00 00 00 63 24 16 05 AC 7E C6 49 66 2E CF 3C
    F3 BA 99 1B 9D 8D AB D5 6C 8D 9C F5 77 54 AE 5A
    5C B3 05 75 9A 60 50 D0 08 1B E3 63 A4 6F 8E DF
    C1 00 00 00 15 C4 B5 1C 03 00 00 00 A5 B7 F7 09
    35 5F C3 0B 21 6B E8 6C 02 2B B4 C3 85 FD 64 DE
    85 1D 9D D0`),
  messageId: 0x66c30d0d000da32cn,
  nonce: fromHex('AC7EC649662ECF3CF3BA991B9D8DABD5'),
  serverNonce: fromHex('6C8D9CF57754AE5A5CB305759A6050D0'),
  responseMessageId: 0x66c30d0de0ff7401n,
};

/** Snapshot B (https://corefork.telegram.org/mtproto/samples-auth_key): here the length field (0x50 = 80) matches the body. */
const SAMPLE_B = {
  request: fromHex(`
    00 00 00 00 00 00 00 00 E0 D1 0C 00 21 A9 72 68
    14 00 00 00 F1 8E 7E BE 75 E6 22 F3 BC 7D 71 46
    32 B8 33 82 1F D7 BB 0C`),
  response: fromHex(`
    00 00 00 00 00 00 00 00 01 4C 52 79 21 A9 72 68
    50 00 00 00 63 24 16 05 75 E6 22 F3 BC 7D 71 46
    32 B8 33 82 1F D7 BB 0C 8E C5 3E C0 50 CB 2D 47
    5B 45 7B AF 44 5B 49 F5 08 16 E7 48 B2 95 22 C6
    8F 00 00 00 15 C4 B5 1C 03 00 00 00 85 FD 64 DE
    85 1D 9D D0 A5 B7 F7 09 35 5F C3 0B 21 6B E8 6C
    02 2B B4 C3`),
  messageId: 0x6872a921000cd1e0n,
  nonce: fromHex('75E622F3BC7D714632B833821FD7BB0C'),
};

describe('req_pq_multi against the samples-auth_key page', () => {
  it('encodes snapshot A byte for byte (40 bytes)', () => {
    const out = encodeReqPqMulti(SAMPLE_A.nonce, SAMPLE_A.messageId);
    expect(out.length).toBe(40);
    expect(toHex(out)).toBe(toHex(SAMPLE_A.request));
  });

  it('encodes snapshot B byte for byte', () => {
    expect(toHex(encodeReqPqMulti(SAMPLE_B.nonce, SAMPLE_B.messageId))).toBe(toHex(SAMPLE_B.request));
  });

  it('decodes the sample request (the lab DC reads what clients send)', () => {
    const req = decodeReqPqMulti(SAMPLE_A.request);
    expect(req.messageId).toBe(SAMPLE_A.messageId);
    expect(toHex(req.nonce)).toBe(toHex(SAMPLE_A.nonce));
  });

  it('rejects a nonce that is not 16 bytes (our misuse: RangeError)', () => {
    expect(() => encodeReqPqMulti(new Uint8Array(15), 4n)).toThrow(RangeError);
  });
});

describe('resPQ against the samples-auth_key page', () => {
  it('decodes snapshot A, whose length field claims 144 bytes for an 80-byte body', () => {
    const res = decodeResPQ(SAMPLE_A.response, SAMPLE_A.nonce);
    expect(res.messageId).toBe(SAMPLE_A.responseMessageId);
    expect(toHex(res.nonce)).toBe(toHex(SAMPLE_A.nonce));
    expect(toHex(res.serverNonce)).toBe(toHex(SAMPLE_A.serverNonce));
    expect(toHex(res.pq)).toBe('1be363a46f8edfc1');
    expect(res.fingerprintsHex).toEqual(['0bc35f3509f7b7a5', 'c3b42b026ce86b21', 'd09d1d85de64fd85']);
    expect(res.fingerprints).toEqual([0x0bc35f3509f7b7a5n, BigInt.asIntN(64, 0xc3b42b026ce86b21n), BigInt.asIntN(64, 0xd09d1d85de64fd85n)]);
    // The documented inconsistency: the field says 0x90, the page shows 80 bytes. Tolerated and reported.
    expect(res.declaredLength).toBe(0x90);
    expect(res.bodyLength).toBe(80);
    expect(res.objectLength).toBe(80);
  });

  it('decodes snapshot B, whose length field matches its body', () => {
    const res = decodeResPQ(SAMPLE_B.response, SAMPLE_B.nonce);
    expect(res.declaredLength).toBe(80);
    expect(res.bodyLength).toBe(80);
    expect(toHex(res.pq)).toBe('16e748b29522c68f');
    expect(res.fingerprintsHex).toEqual(['d09d1d85de64fd85', '0bc35f3509f7b7a5', 'c3b42b026ce86b21']);
  });

  it('server message ids in the samples answer a client message (1 mod 4); client ids are divisible by 4', () => {
    expect(SAMPLE_A.responseMessageId % 4n).toBe(1n);
    expect(decodeResPQ(SAMPLE_B.response).messageId % 4n).toBe(1n);
    expect(SAMPLE_A.messageId % 4n).toBe(0n);
    expect(SAMPLE_B.messageId % 4n).toBe(0n);
  });

  it('encodeResPQ reproduces snapshot A exactly, wrong length field included', () => {
    const out = encodeResPQ({
      messageId: SAMPLE_A.responseMessageId,
      nonce: SAMPLE_A.nonce,
      serverNonce: SAMPLE_A.serverNonce,
      pq: fromHex('1be363a46f8edfc1'),
      fingerprints: [0x0bc35f3509f7b7a5n, 0xc3b42b026ce86b21n, 0xd09d1d85de64fd85n],
      declaredLength: 0x90,
    });
    expect(toHex(out)).toBe(toHex(SAMPLE_A.response));
  });

  it('a resPQ carrying another nonce is proto_mismatch, with both nonces in evidence', () => {
    const f = failureOf(() => decodeResPQ(SAMPLE_A.response, SAMPLE_B.nonce));
    expect(f.code).toBe('proto_mismatch');
    expect(f.evidence).toEqual({
      expectedNonceHex: toHex(SAMPLE_B.nonce),
      receivedNonceHex: toHex(SAMPLE_A.nonce),
    });
  });
});

describe('message ids (core.telegram.org/mtproto/description#message-identifier-msg-id)', () => {
  it('puts unix seconds in the high 32 bits', () => {
    expect(clientMessageId(0x66c30d0d * 1000)).toBe(0x66c30d0d00000000n);
    expect(clientMessageId(0x66c30d0d * 1000 + 500)).toBe(0x66c30d0d80000000n);
    expect(clientMessageId(0x66c30d0d * 1000) >> 32n).toBe(SAMPLE_A.messageId >> 32n);
  });

  it('client ids are divisible by 4, server answers are 1 mod 4, for any time', () => {
    const random = seededBytes('msgid');
    for (let i = 0; i < 1000; i++) {
      const ms = 1.7e12 + (random(4).readUInt32LE() % 1e9) + (random(1)[0] ?? 0) / 256;
      expect(clientMessageId(ms) % 4n).toBe(0n);
      expect(serverResponseMessageId(ms) % 4n).toBe(1n);
      expect(serverResponseMessageId(ms) - clientMessageId(ms)).toBe(1n);
      expect(clientMessageId(ms) >> 32n).toBe(BigInt(Math.floor(ms / 1000)));
    }
  });

  it('is monotonic in time', () => {
    expect(clientMessageId(1_700_000_000_001)).toBeGreaterThan(clientMessageId(1_700_000_000_000));
    expect(clientMessageId(1_700_000_001_000)).toBeGreaterThan(clientMessageId(1_700_000_000_999));
  });

  it('refuses times it cannot represent (RangeError)', () => {
    expect(() => clientMessageId(-1)).toThrow(RangeError);
    expect(() => clientMessageId(Number.NaN)).toThrow(RangeError);
    expect(() => clientMessageId(2 ** 32 * 1000)).toThrow(RangeError);
  });
});

describe('transport errors (core.telegram.org/mtproto/mtproto-transports)', () => {
  for (const [wire, code] of [
    ['6cfeffff', -404],
    ['53feffff', -429],
    ['44feffff', -444],
  ] as const) {
    it(`${wire} is proto_error with { transportError: ${code} }`, () => {
      const f = failureOf(() => decodeResPQ(fromHex(wire), SAMPLE_A.nonce));
      expect(f.code).toBe('proto_error');
      expect(f.evidence).toEqual({ transportError: code });
      expect(failureOf(() => throwIfTransportError(fromHex(wire))).evidence).toEqual({ transportError: code });
    });
  }

  it('four non-negative bytes are not a transport error but a malformed message', () => {
    expect(failureOf(() => decodeResPQ(fromHex('94010000'))).code).toBe('proto_malformed');
    expect(() => throwIfTransportError(fromHex('94010000'))).not.toThrow();
  });
});

describe('length and envelope checks', () => {
  const good = (extra: Partial<Parameters<typeof encodeResPQ>[0]> = {}) =>
    encodeResPQ({
      messageId: 0x66c30d0de0ff7401n,
      nonce: SAMPLE_A.nonce,
      serverNonce: SAMPLE_A.serverNonce,
      pq: fromHex('1be363a46f8edfc1'),
      fingerprints: [0xd09d1d85de64fd85n],
      ...extra,
    });

  it('accepts padding after the object counted in the length (tdlib pads unencrypted messages)', () => {
    const res = decodeResPQ(good({ padding: new Uint8Array(32).fill(0xaa) }), SAMPLE_A.nonce);
    expect(res.objectLength).toBe(64);
    expect(res.bodyLength).toBe(96);
    expect(res.declaredLength).toBe(96);
  });

  it('accepts padding the length does not count (padded intermediate adds 0-15 bytes in the frame)', () => {
    const res = decodeResPQ(Buffer.concat([good(), Buffer.from('010203', 'hex')]), SAMPLE_A.nonce);
    expect(res.declaredLength).toBe(64);
    expect(res.bodyLength).toBe(67);
  });

  it('rejects a length field shorter than the object it carries', () => {
    const f = failureOf(() => decodeResPQ(good({ declaredLength: 63 })));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence).toEqual({ declaredLength: 63, objectLength: 64 });
  });

  it('rejects a non-zero auth_key_id (an encrypted message where a plain answer belongs)', () => {
    const msg = Buffer.from(good());
    msg[0] = 1;
    const f = failureOf(() => decodeResPQ(msg));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence).toEqual({ authKeyIdHex: '0000000000000001' });
  });

  it('rejects message_id 0 and anything shorter than the 20-byte header', () => {
    expect(failureOf(() => decodeUnencryptedMessage(encodeUnencryptedMessage(0n, new Uint8Array(4)))).code).toBe('proto_malformed');
    const short = failureOf(() => decodeResPQ(new Uint8Array(UNENCRYPTED_HEADER_LENGTH - 1)));
    expect(short.code).toBe('proto_malformed');
    expect(short.evidence).toEqual({ messageLength: 19 });
  });

  it('rejects our own request echoed back, naming its constructor', () => {
    const f = failureOf(() => decodeResPQ(SAMPLE_A.request, SAMPLE_A.nonce));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence.constructor).toBe('be7e8ef1');
  });

  it('rejects a resPQ whose pq or vector declares more than the frame holds, before allocating', () => {
    const header = encodeUnencryptedMessage(4n, new Uint8Array(0), 0).subarray(0, 20);
    const hugePq = Buffer.concat([header, new TlWriter().uint32(0x05162463).int128(SAMPLE_A.nonce).int128(SAMPLE_A.nonce).finish(), fromHex('feffffff')]);
    expect(failureOf(() => decodeResPQ(hugePq)).evidence).toMatchObject({ tlField: 'resPQ.pq' });
    const hugeVector = Buffer.concat([
      header,
      new TlWriter().uint32(0x05162463).int128(SAMPLE_A.nonce).int128(SAMPLE_A.nonce).bytes(new Uint8Array(8)).finish(),
      fromHex('15c4b51cffffff7f'),
    ]);
    const f = failureOf(() => decodeResPQ(hugeVector));
    expect(f.code).toBe('proto_malformed');
    expect(f.evidence).toMatchObject({ tlField: 'resPQ.server_public_key_fingerprints', declaredCount: 0x7fffffff });
  });
});

describe('properties', () => {
  it('round trip: encodeResPQ then decodeResPQ gives the fields back', () => {
    const random = seededBytes('respq-roundtrip');
    for (let i = 0; i < 300; i++) {
      const fields = {
        messageId: serverResponseMessageId(1.7e12 + i * 997),
        nonce: random(NONCE_LENGTH),
        serverNonce: random(NONCE_LENGTH),
        pq: random((random(2).readUInt16LE() % 400) | 0),
        fingerprints: Array.from({ length: (random(1)[0] ?? 0) % 6 }, () => BigInt.asIntN(64, random(8).readBigUInt64LE())),
      };
      const res = decodeResPQ(encodeResPQ(fields), fields.nonce);
      expect(res.messageId).toBe(fields.messageId);
      expect(toHex(res.serverNonce)).toBe(toHex(fields.serverNonce));
      expect(toHex(res.pq)).toBe(toHex(fields.pq));
      expect(res.fingerprints).toEqual(fields.fingerprints);
      expect(res.fingerprintsHex).toEqual(fields.fingerprints.map(fingerprintHex));
      expect(res.declaredLength).toBe(res.bodyLength);
    }
  });

  it('round trip: encodeReqPqMulti then decodeReqPqMulti', () => {
    const random = seededBytes('req-roundtrip');
    for (let i = 0; i < 300; i++) {
      const nonce = random(16);
      const id = clientMessageId(1.7e12 + i * 7919);
      const req = decodeReqPqMulti(encodeReqPqMulti(nonce, id));
      expect(req.messageId).toBe(id);
      expect(toHex(req.nonce)).toBe(toHex(nonce));
    }
  });

  it('every truncation of the sample resPQ is proto_malformed', () => {
    for (let n = 0; n < SAMPLE_B.response.length; n++) {
      const f = failureOf(() => decodeResPQ(SAMPLE_B.response.subarray(0, n), SAMPLE_B.nonce));
      expect([n, f.code]).toEqual([n, 'proto_malformed']);
    }
  });

  it('fuzz: random bytes give proto_malformed, or proto_error exactly when they are a transport error', () => {
    const random = seededBytes('respq-fuzz');
    for (let i = 0; i < 5000; i++) {
      const input = random((random(1)[0] ?? 0) % 160);
      if (i % 3 === 0) input.fill(0, 0, Math.min(8, input.length)); // get past the auth_key_id check often
      let expected: string = 'proto_malformed';
      if (input.length >= 4 && input.length < 16 && input.readInt32LE(0) < 0) expected = 'proto_error';
      let code: string | null = null;
      try {
        decodeResPQ(input, SAMPLE_B.nonce);
      } catch (err) {
        expect(err).toBeInstanceOf(ProbeFailure);
        code = (err as ProbeFailure).code;
      }
      expect(code).toBe(expected);
    }
  });

  it('fuzz: single-byte mutations of the sample parse, or fail as proto_malformed / proto_mismatch', () => {
    const random = seededBytes('respq-mutate');
    const seen = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const input = Buffer.from(SAMPLE_B.response);
      const at = (random(1)[0] ?? 0) % input.length;
      input[at] = (input[at] ?? 0) ^ (1 + ((random(1)[0] ?? 0) % 255));
      try {
        decodeResPQ(input, SAMPLE_B.nonce);
        seen.add('ok');
      } catch (err) {
        expect(err).toBeInstanceOf(ProbeFailure);
        const code = (err as ProbeFailure).code;
        expect(['proto_malformed', 'proto_mismatch']).toContain(code);
        seen.add(code);
        if (code === 'proto_mismatch') expect(at >= 24 && at < 40).toBe(true); // only the nonce bytes
      }
    }
    expect([...seen].sort()).toEqual(['ok', 'proto_malformed', 'proto_mismatch']);
  });
});
