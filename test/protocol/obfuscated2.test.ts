import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import { decodeReqPqMulti, decodeResPQ, encodeReqPqMulti, encodeResPQ, serverResponseMessageId } from '../../src/protocol/mtproto.js';
import { createFrameDecoder, createFrameEncoder, detectClientTransport } from '../../src/protocol/mtproto-transport.js';
import {
  OBFUSCATED2_HEADER_LENGTH,
  OBFUSCATED2_TAG,
  acceptObfuscated2Client,
  createObfuscated2Client,
  generateObfuscated2Header,
  isForbiddenHeader,
  obfuscated2ClientFromHeader,
  type ObfuscatedTransport,
} from '../../src/protocol/obfuscated2.js';
import { failureOf, fromHex, seededBytes, toHex } from '../helpers/bytes.js';

/** A header that passes every rule: 0x10, 0x11, ... 0x4f. */
const ALLOWED = Buffer.from(Array.from({ length: 64 }, (_, i) => 0x10 + i));

function withStart(startHex: string): Buffer {
  const h = Buffer.from(ALLOWED);
  fromHex(startHex).copy(h, 0);
  return h;
}

/**
 * AES-256-CTR built independently from AES-256-ECB: keystream block i = AES(key, iv + i), the
 * counter a 128-bit big-endian integer (NIST SP 800-38A, 6.5). Checks the codec's use of
 * node:crypto's CTR against a second construction, across the header boundary.
 */
function ctrKeystream(key: Uint8Array, iv: Uint8Array, length: number): Buffer {
  const ecb = createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
  const blocks: Buffer[] = [];
  let counter = BigInt('0x' + toHex(iv));
  for (let produced = 0; produced < length; produced += 16) {
    blocks.push(Buffer.from(counter.toString(16).padStart(32, '0'), 'hex'));
    counter = (counter + 1n) & ((1n << 128n) - 1n);
  }
  return ecb.update(Buffer.concat(blocks)).subarray(0, length);
}

const xor = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.map((v, i) => v ^ (b[i] ?? 0)));

describe('forbidden header starts (tdlib td/mtproto/TcpTransport.cpp, ObfuscatedTransport::init)', () => {
  const forbidden: [string, string][] = [
    ['first byte EF (abridged tag)', 'ef'],
    ['HEAD', toHex(Buffer.from('HEAD'))],
    ['POST', toHex(Buffer.from('POST'))],
    ['GET ', toHex(Buffer.from('GET '))],
    ['OPTI (OPTIONS)', toHex(Buffer.from('OPTI'))],
    ['EEEEEEEE (intermediate tag)', 'eeeeeeee'],
    ['DDDDDDDD (padded intermediate tag)', 'dddddddd'],
    ['16 03 01 02 (TLS record)', '16030102'],
    ['zero second word (full transport seq 0)', '1011121300000000'],
  ];
  for (const [name, start] of forbidden) {
    it(`forbids ${name}`, () => {
      expect(isForbiddenHeader(withStart(start))).toBe(true);
    });
  }

  it('allows an ordinary header, and words tdlib does not list (PVrG, which Telethon and gramjs add)', () => {
    expect(isForbiddenHeader(ALLOWED)).toBe(false);
    expect(isForbiddenHeader(withStart(toHex(Buffer.from('PVrG'))))).toBe(false);
    expect(isForbiddenHeader(withStart('efefefef').fill(0x10, 0, 1))).toBe(false);
  });

  it('forbidden starts are exactly the ones detectClientTransport reads as another transport', () => {
    for (const [, start] of forbidden) {
      expect(detectClientTransport(withStart(start))).not.toBe('obfuscated2');
    }
    expect(detectClientTransport(ALLOWED)).toBe('obfuscated2');
  });
});

describe('generateObfuscated2Header', () => {
  it('draws again until the header is allowed, then writes the tag at 56 and the dc id at 60', () => {
    const draws = [withStart('ef'), withStart(toHex(Buffer.from('GET '))), withStart('1011121300000000'), ALLOWED];
    let calls = 0;
    const header = generateObfuscated2Header('intermediate', 2, (n) => {
      calls++;
      return draws.shift()!.subarray(0, n);
    });
    expect(calls).toBe(4);
    expect(toHex(header.subarray(0, 56))).toBe(toHex(ALLOWED.subarray(0, 56)));
    expect(toHex(header.subarray(56, 60))).toBe('eeeeeeee');
    expect(toHex(header.subarray(60, 62))).toBe('0200');
    expect(toHex(header.subarray(62))).toBe(toHex(ALLOWED.subarray(62)));
  });

  it('writes each tag, and negative (media) DC ids as int16 LE', () => {
    const tags: [ObfuscatedTransport, string][] = [
      ['abridged', 'efefefef'],
      ['intermediate', 'eeeeeeee'],
      ['padded_intermediate', 'dddddddd'],
    ];
    for (const [transport, tag] of tags) {
      expect(toHex(generateObfuscated2Header(transport, -4, () => ALLOWED).subarray(56, 62))).toBe(tag + 'fcff');
    }
  });

  it('leaves bytes 60-61 random for dc id 0, as tdlib does', () => {
    expect(toHex(generateObfuscated2Header('intermediate', 0, () => ALLOWED).subarray(60, 62))).toBe(toHex(ALLOWED.subarray(60, 62)));
  });

  it('gives up after 10 forbidden draws (a broken random source), and refuses non-int16 DC ids', () => {
    expect(() => generateObfuscated2Header('intermediate', 2, () => withStart('ef'))).toThrow(/10 forbidden/);
    expect(() => generateObfuscated2Header('intermediate', 40000, () => ALLOWED)).toThrow(RangeError);
  });

  it('with the real random source never yields a forbidden header', () => {
    for (let i = 0; i < 2000; i++) {
      const h = generateObfuscated2Header('padded_intermediate', 5);
      expect(h.length).toBe(OBFUSCATED2_HEADER_LENGTH);
      expect(isForbiddenHeader(h)).toBe(false);
    }
  });
});

describe('key derivation and the header on the wire', () => {
  const plain = generateObfuscated2Header('intermediate', 2, () => ALLOWED);

  it('sends bytes 0-55 in clear and 56-63 encrypted with key = header[8..40), iv = header[40..56)', () => {
    const client = obfuscated2ClientFromHeader(plain);
    const keystream = ctrKeystream(plain.subarray(8, 40), plain.subarray(40, 56), 64);
    expect(toHex(client.header.subarray(0, 56))).toBe(toHex(plain.subarray(0, 56)));
    expect(toHex(client.header.subarray(56))).toBe(toHex(xor(plain.subarray(56), keystream.subarray(56))));
    expect(client.transport).toBe('intermediate');
    expect(client.dcId).toBe(2);
  });

  it('continues the client->server stream after the header (keystream offset 64 onwards)', () => {
    const client = obfuscated2ClientFromHeader(plain);
    const data = Buffer.alloc(100, 0x5a);
    const keystream = ctrKeystream(plain.subarray(8, 40), plain.subarray(40, 56), 164);
    expect(toHex(client.encrypt(data))).toBe(toHex(xor(data, keystream.subarray(64))));
  });

  it('decrypts server->client bytes with key and iv from the reversed header', () => {
    const client = obfuscated2ClientFromHeader(plain);
    const rev = Buffer.from(plain).reverse();
    const keystream = ctrKeystream(rev.subarray(8, 40), rev.subarray(40, 56), 50);
    const answer = Buffer.alloc(50, 0xa5);
    expect(toHex(client.decrypt(xor(answer, keystream)))).toBe(toHex(answer));
  });

  it('encrypting in pieces equals encrypting at once (the CTR stream continues across calls)', () => {
    const random = seededBytes('o2-pieces');
    const data = random(3000);
    const whole = obfuscated2ClientFromHeader(plain).encrypt(data);
    const pieces = obfuscated2ClientFromHeader(plain);
    const parts: Uint8Array[] = [];
    for (let at = 0; at < data.length; ) {
      const size = 1 + ((random(1)[0] ?? 0) % 37);
      parts.push(pieces.encrypt(data.subarray(at, at + size)));
      at += size;
    }
    expect(toHex(Buffer.concat(parts))).toBe(toHex(whole));
  });
});

describe('server side (the lab DC)', () => {
  const transports = Object.keys(OBFUSCATED2_TAG) as ObfuscatedTransport[];
  for (const transport of transports) {
    it(`${transport}: reads the header, decrypts the client stream, answers in the other direction`, () => {
      const random = seededBytes(`o2-server-${transport}`);
      const client = createObfuscated2Client(transport, -3);
      const server = acceptObfuscated2Client(client.header);
      expect(server.transport).toBe(transport);
      expect(server.dcId).toBe(-3);
      for (let i = 0; i < 50; i++) {
        const up = random(1 + ((random(1)[0] ?? 0) % 200));
        expect(toHex(server.decrypt(client.encrypt(up)))).toBe(toHex(up));
        const down = random(1 + ((random(1)[0] ?? 0) % 200));
        expect(toHex(client.decrypt(server.encrypt(down)))).toBe(toHex(down));
      }
    });
  }

  it('rejects a header whose decrypted tag is unknown, with the tag in evidence', () => {
    // A full-transport-looking client or plain garbage: nothing decrypts to a known tag.
    const f = failureOf(() => acceptObfuscated2Client(ALLOWED));
    expect(f.code).toBe('proto_malformed');
    expect(Object.keys(f.evidence)).toEqual(['obfuscatedTagHex']);
    expect(failureOf(() => acceptObfuscated2Client(ALLOWED.subarray(0, 63))).evidence).toEqual({ headerLength: 63 });
  });

  it('fuzz: random 64-byte headers are proto_malformed (or, rarely, a valid tag), never another exception', () => {
    const random = seededBytes('o2-fuzz');
    let accepted = 0;
    for (let i = 0; i < 3000; i++) {
      try {
        acceptObfuscated2Client(random(64));
        accepted++;
      } catch (err) {
        expect(err).toBeInstanceOf(ProbeFailure);
        expect((err as ProbeFailure).code).toBe('proto_malformed');
      }
    }
    expect(accepted).toBe(0); // 3 tags in 2^32: none expected in 3000 draws
  });
});

describe('req_pq_multi over obfuscated2, end to end in memory', () => {
  for (const transport of ['intermediate', 'padded_intermediate', 'abridged'] as const) {
    it(`${transport}: client -> lab DC -> client, resPQ nonce checked`, () => {
      const nonce = fromHex('AC7EC649662ECF3CF3BA991B9D8DABD5');
      // Client: header, then frames without a tag (the tag travels in the header), encrypted.
      const client = createObfuscated2Client(transport, 2);
      const clientFrames = createFrameEncoder(transport, { sendTag: false });
      const wire = Buffer.concat([client.header, client.encrypt(clientFrames.encode(encodeReqPqMulti(nonce, 0x66c30d0d000da32cn)))]);

      // Lab DC: recognise obfuscated2, accept the header, decrypt, deframe, answer.
      expect(detectClientTransport(wire.subarray(0, 8))).toBe('obfuscated2');
      const server = acceptObfuscated2Client(wire.subarray(0, 64));
      const serverIn = createFrameDecoder(server.transport);
      const [frame] = serverIn.push(server.decrypt(wire.subarray(64)));
      if (frame?.kind !== 'message') throw new Error('expected a message frame');
      const req = decodeReqPqMulti(frame.payload);
      const answer = encodeResPQ({
        messageId: serverResponseMessageId(1_724_058_893_000),
        nonce: req.nonce,
        serverNonce: fromHex('6C8D9CF57754AE5A5CB305759A6050D0'),
        pq: fromHex('1be363a46f8edfc1'),
        fingerprints: [0xd09d1d85de64fd85n],
      });
      const down = server.encrypt(createFrameEncoder(server.transport, { sendTag: false }).encode(answer));

      // Client: decrypt, deframe, decode with its own nonce.
      const [reply] = createFrameDecoder(transport).push(client.decrypt(down));
      if (reply?.kind !== 'message') throw new Error('expected a message frame');
      expect(decodeResPQ(reply.payload, nonce).fingerprintsHex).toEqual(['d09d1d85de64fd85']);
    });
  }
});
