import { createCipheriv, createHash, createHmac } from 'node:crypto';
import { x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import {
  answerClientHello,
  generateX25519KeyPair,
  NOISE_PROTOCOL_NAME,
  WaNoiseClient,
  WaSymmetricState,
  x25519,
  x25519KeyPairFromPrivate,
} from '../../src/protocol/noise.js';
import { connectionHeader, encodeFrame } from '../../src/protocol/waframe.js';
import { encodeHandshakeMessage } from '../../src/protocol/waproto.js';
import { failureOf, fuzzBytes, toHex } from '../helpers/bytes.js';

const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

const HEADER = connectionHeader(6, 3);
const fixedKey = (label: string) => x25519KeyPairFromPrivate(sha256(Buffer.from(label)));
const CLIENT_E = fixedKey('callprobe test client ephemeral');
const SERVER_E = fixedKey('callprobe test server ephemeral');
const SERVER_S = fixedKey('callprobe test server static');
const PAYLOAD = Buffer.from('a certificate chain would go here');

function serverAnswer(client: WaNoiseClient, overrides: Partial<Parameters<typeof answerClientHello>[0]> = {}) {
  return answerClientHello({
    header: HEADER,
    clientHello: client.clientHello,
    static: SERVER_S,
    ephemeral: SERVER_E,
    payload: PAYLOAD,
    ...overrides,
  });
}

describe('X25519 keys', () => {
  it('derives public keys and shared secrets as RFC 7748 §6.1 does', () => {
    // RFC 7748 §6.1 Alice and Bob
    const alice = x25519KeyPairFromPrivate(Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex'));
    const bob = x25519KeyPairFromPrivate(Buffer.from('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb', 'hex'));
    expect(toHex(alice.publicKey)).toBe('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    expect(toHex(bob.publicKey)).toBe('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    expect(toHex(x25519(alice.privateKey, bob.publicKey))).toBe(shared);
    expect(toHex(x25519(bob.privateKey, alice.publicKey))).toBe(shared);
  });

  it('generates fresh key pairs whose public key matches an independent derivation (@noble/curves)', () => {
    const kp = generateX25519KeyPair();
    expect(kp.privateKey).toHaveLength(32);
    expect(toHex(kp.publicKey)).toBe(toHex(nobleX25519.getPublicKey(kp.privateKey)));
    expect(toHex(generateX25519KeyPair().publicKey)).not.toBe(toHex(kp.publicKey));
  });

  it('refuses low-order and wrongly sized peer keys as proto_malformed', () => {
    expect(failureOf(() => x25519(CLIENT_E.privateKey, new Uint8Array(32), 'server ephemeral')).message).toBe(
      'server ephemeral is not a usable X25519 key',
    );
    expect(failureOf(() => x25519(CLIENT_E.privateKey, new Uint8Array(31))).code).toBe('proto_malformed');
  });
});

describe('WaSymmetricState', () => {
  it('starts with h = ck = the 32-byte protocol name, used raw', () => {
    const s = new WaSymmetricState();
    expect(NOISE_PROTOCOL_NAME).toHaveLength(32);
    expect(Buffer.from(s.handshakeHash).toString('latin1')).toBe(NOISE_PROTOCOL_NAME);
    expect(toHex(s.chainingKey)).toBe(toHex(s.handshakeHash));
  });

  it('MixHash is h = SHA-256(h || data)', () => {
    const s = new WaSymmetricState();
    s.mixHash(HEADER);
    expect(toHex(s.handshakeHash)).toBe(toHex(sha256(Buffer.from(NOISE_PROTOCOL_NAME, 'latin1'), HEADER)));
  });

  it('MixKey is RFC 5869 HKDF-SHA256(salt ck, ikm) split into ck then k; nonces count from 0 per key', () => {
    // RFC 5869 as HMAC by hand: PRK = HMAC(ck, ikm); T1 = HMAC(PRK, 0x01); T2 = HMAC(PRK, T1 || 0x02).
    const s = new WaSymmetricState();
    const ck0 = s.chainingKey;
    const ikm = fuzzBytes('ikm', 32);
    const prk = createHmac('sha256', ck0).update(ikm).digest();
    const t1 = createHmac('sha256', prk).update(Uint8Array.of(1)).digest();
    const t2 = createHmac('sha256', prk).update(Buffer.concat([t1, Uint8Array.of(2)])).digest();
    s.mixKey(ikm);
    expect(toHex(s.chainingKey)).toBe(toHex(t1));
    // k = t2: encrypting with it under nonce 0 and ad = h matches a direct AES-256-GCM seal.
    const h = s.handshakeHash;
    const c = createCipheriv('aes-256-gcm', t2, Buffer.alloc(12));
    c.setAAD(h);
    const expected = Buffer.concat([c.update(Buffer.from('x')), c.final(), c.getAuthTag()]);
    expect(toHex(s.encryptAndHash(Buffer.from('x')))).toBe(toHex(expected));
    // second message under the same key uses IV 00..00 00000001
    const h2 = s.handshakeHash;
    const c2 = createCipheriv('aes-256-gcm', t2, Buffer.from('000000000000000000000001', 'hex'));
    c2.setAAD(h2);
    const expected2 = Buffer.concat([c2.update(Buffer.from('y')), c2.final(), c2.getAuthTag()]);
    expect(toHex(s.encryptAndHash(Buffer.from('y')))).toBe(toHex(expected2));
  });

  it('clone() is independent of the original', () => {
    const a = new WaSymmetricState();
    const b = a.clone();
    b.mixHash(Uint8Array.of(1));
    expect(toHex(a.handshakeHash)).not.toBe(toHex(b.handshakeHash));
  });
});

describe('WaNoiseClient: the first bytes', () => {
  it('are exactly 57 41 06 03 | 00 00 24 | 12 22 | 0A 20 <32-byte ephemeral> (43 bytes)', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    expect(client.firstBytes).toHaveLength(43);
    expect(toHex(client.firstBytes)).toBe('57410603' + '000024' + '1222' + '0a20' + toHex(CLIENT_E.publicKey));
    expect(toHex(client.clientHello)).toBe('12220a20' + toHex(CLIENT_E.publicKey));
  });

  it('use a fresh ephemeral per client unless one is given', () => {
    const a = new WaNoiseClient({ header: HEADER });
    const b = new WaNoiseClient({ header: HEADER });
    expect(toHex(a.ephemeral.publicKey)).not.toBe(toHex(b.ephemeral.publicKey));
    expect(toHex(a.firstBytes.subarray(0, 11))).toBe('5741060300002412220a20');
  });

  it("hash the header as prologue and the ephemeral, but not the empty payload (WhatsApp's deviation)", () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const name = Buffer.from(NOISE_PROTOCOL_NAME, 'latin1');
    const whatsapp = sha256(sha256(name, HEADER), CLIENT_E.publicKey);
    const noiseSpec = sha256(whatsapp, new Uint8Array(0)); // the spec's MixHash(empty payload)
    expect(toHex(client.handshakeHash)).toBe(toHex(whatsapp));
    expect(toHex(client.handshakeHash)).not.toBe(toHex(noiseSpec));
  });
});

describe('round trip: answerClientHello then readServerHello', () => {
  it('opens the static key and payload, with both sides at the same h and ck', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const answer = serverAnswer(client);
    expect(toHex(answer.clientEphemeral)).toBe(toHex(CLIENT_E.publicKey));
    expect(toHex(answer.frame)).toBe(toHex(encodeFrame(answer.serverHello)));
    const opened = client.readServerHello(answer.serverHello);
    expect(toHex(opened.serverEphemeral)).toBe(toHex(SERVER_E.publicKey));
    expect(toHex(opened.serverStatic)).toBe(toHex(SERVER_S.publicKey));
    expect(Buffer.from(opened.certChain).toString()).toBe(PAYLOAD.toString());
    expect(toHex(opened.handshakeHash)).toBe(toHex(answer.handshakeHash));
    expect(toHex(opened.chainingKey)).toBe(toHex(answer.chainingKey));
  });

  it('lays out the ServerHello as HandshakeMessage{serverHello{ephemeral, static (48 B), payload}}', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const hello = toHex(serverAnswer(client).serverHello);
    const payloadLen = PAYLOAD.length + 16; // 33 + GCM tag = 49 = 0x31
    const inner = 2 + 32 + 2 + 48 + 2 + payloadLen; // 135 = varint 87 01
    expect(inner).toBe(135);
    expect(hello.slice(0, 6 + 4)).toBe('1a8701' + '0a20');
    expect(hello.slice(10, 10 + 64)).toBe(toHex(SERVER_E.publicKey));
    expect(hello.slice(74, 78)).toBe('1230');
    expect(hello.slice(78 + 96, 78 + 96 + 4)).toBe('1a31');
    expect(hello.length / 2).toBe(3 + inner);
  });

  it('is deterministic for fixed keys and differs when any key differs', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const a = serverAnswer(client).serverHello;
    expect(toHex(serverAnswer(client).serverHello)).toBe(toHex(a));
    expect(toHex(serverAnswer(client, { ephemeral: fixedKey('other') }).serverHello)).not.toBe(toHex(a));
  });

  it('works with fresh keys on both sides', () => {
    const client = new WaNoiseClient({ header: HEADER });
    const staticKey = generateX25519KeyPair();
    const answer = answerClientHello({ header: HEADER, clientHello: client.clientHello, static: staticKey, payload: PAYLOAD });
    expect(toHex(client.readServerHello(answer.serverHello).serverStatic)).toBe(toHex(staticKey.publicKey));
  });
});

describe('readServerHello: answers that are not for us', () => {
  it('a ServerHello replayed from another session (another client ephemeral) is proto_mismatch at the static key', () => {
    const earlier = new WaNoiseClient({ header: HEADER, ephemeral: fixedKey('an earlier session') });
    const recorded = serverAnswer(earlier).serverHello;
    expect(() => earlier.readServerHello(recorded)).not.toThrow();
    const us = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const f = failureOf(() => us.readServerHello(recorded));
    expect(f.code).toBe('proto_mismatch');
    expect(f.message).toBe('encrypted static does not authenticate under our handshake keys: not an answer to our ClientHello');
    expect(f.evidence).toEqual({ part: 'static', staticDecrypted: false });
  });

  it('a ServerHello for another connection header (prologue) is proto_mismatch', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const answer = serverAnswer(client, { header: connectionHeader(6, 2) });
    expect(failureOf(() => client.readServerHello(answer.serverHello)).code).toBe('proto_mismatch');
  });

  it("a middlebox that seals a genuine static key it does not own fails at the payload (proto_mismatch)", () => {
    // It saw our ephemeral, so it can do ee and seal any static public key; es needs that key's private half.
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const impostor = { publicKey: SERVER_S.publicKey, privateKey: fixedKey('impostor').privateKey };
    const f = failureOf(() => client.readServerHello(serverAnswer(client, { static: impostor }).serverHello));
    expect(f.code).toBe('proto_mismatch');
    expect(f.evidence).toEqual({ part: 'payload', staticDecrypted: true });
  });

  it('a static that decrypts to an unusable key (low order) says it did decrypt: staticDecrypted true, proto_malformed', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const lowOrder = { publicKey: new Uint8Array(32), privateKey: fixedKey('sealer').privateKey };
    const f = failureOf(() => client.readServerHello(serverAnswer(client, { static: lowOrder }).serverHello));
    expect(f.code).toBe('proto_malformed');
    expect(f.message).toBe('the server static key decrypted, but is not a usable X25519 key');
    expect(f.evidence).toEqual({ key: '00'.repeat(32), staticDecrypted: true });
  });

  it('our own ClientHello echoed back is not a ServerHello (proto_malformed)', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const f = failureOf(() => client.readServerHello(client.clientHello));
    expect(f.code).toBe('proto_malformed');
    expect(f.message).toBe('not a ServerHello: HandshakeMessage has no serverHello');
    expect(f.evidence).toEqual({ fields: ['clientHello'] });
  });

  it.each([
    ['no static', { ephemeral: new Uint8Array(32), payload: new Uint8Array(16) }, 'ServerHello is missing ephemeral, static or payload'],
    ['a 31-byte ephemeral', { ephemeral: new Uint8Array(31), static: new Uint8Array(48), payload: new Uint8Array(16) }, 'ServerHello ephemeral is 31 bytes, expected 32'],
    ['a 47-byte static', { ephemeral: SERVER_E.publicKey, static: new Uint8Array(47), payload: new Uint8Array(16) }, 'ServerHello static is 47 bytes, expected 48'],
    ['a 15-byte payload', { ephemeral: SERVER_E.publicKey, static: new Uint8Array(48), payload: new Uint8Array(15) }, 'ServerHello payload is 15 bytes, shorter than the GCM tag'],
    ['a low-order ephemeral', { ephemeral: new Uint8Array(32), static: new Uint8Array(48), payload: new Uint8Array(16) }, 'server ephemeral is not a usable X25519 key'],
  ])('a ServerHello with %s is proto_malformed', (_name, serverHello, message) => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const f = failureOf(() => client.readServerHello(encodeHandshakeMessage({ serverHello })));
    expect(f.code).toBe('proto_malformed');
    expect(f.message).toBe(message);
  });

  it('leaves the client usable after a failed read', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const good = serverAnswer(client).serverHello;
    const bad = Uint8Array.from(good);
    bad[50]! ^= 1;
    expect(failureOf(() => client.readServerHello(bad)).code).toBe('proto_mismatch');
    expect(toHex(client.readServerHello(good).serverStatic)).toBe(toHex(SERVER_S.publicKey));
  });
});

describe('answerClientHello (lab server side)', () => {
  it('refuses a first frame that is not a ClientHello with a 32-byte ephemeral', () => {
    const base = { header: HEADER, static: SERVER_S, payload: PAYLOAD };
    expect(failureOf(() => answerClientHello({ ...base, clientHello: Uint8Array.of(0xff) })).code).toBe('proto_malformed');
    expect(failureOf(() => answerClientHello({ ...base, clientHello: new Uint8Array(0) })).message).toBe('not a ClientHello with an ephemeral key');
    const short = encodeHandshakeMessage({ clientHello: { ephemeral: new Uint8Array(16) } });
    expect(failureOf(() => answerClientHello({ ...base, clientHello: short })).message).toBe('ClientHello ephemeral is 16 bytes, expected 32');
  });
});

describe('fuzz: hostile ServerHello bytes give proto_malformed or proto_mismatch, never another exception', () => {
  const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
  const good = serverAnswer(client).serverHello;
  const codeOf = (bytes: Uint8Array) => {
    try {
      client.readServerHello(bytes);
      return 'ok';
    } catch (err) {
      if (!(err instanceof ProbeFailure)) throw err;
      return err.code;
    }
  };

  it('random bytes', () => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 2000; i++) {
      const code = codeOf(fuzzBytes(`random-${i}`, i % 300));
      counts[code] = (counts[code] ?? 0) + 1;
    }
    expect(Object.keys(counts)).toEqual(['proto_malformed']);
  });

  it('random bytes inside a well-formed ServerHello envelope are proto_mismatch', () => {
    for (let i = 0; i < 300; i++) {
      const serverHello = {
        ephemeral: fuzzBytes(`e-${i}`, 32),
        static: fuzzBytes(`s-${i}`, 48),
        payload: fuzzBytes(`p-${i}`, 16 + (i % 200)),
      };
      expect(codeOf(encodeHandshakeMessage({ serverHello }))).toBe('proto_mismatch');
    }
  });

  it('every truncation of a valid ServerHello', () => {
    for (let n = 0; n < good.length; n++) {
      expect(['proto_malformed', 'proto_mismatch'], `truncated to ${n}`).toContain(codeOf(good.subarray(0, n)));
    }
  });

  it('every single-bit flip of a valid ServerHello; flips inside the sealed static or payload are proto_mismatch', () => {
    // Layout (see the layout test): 1a 87 01 | 0a 20 <ephemeral 5..37> | 12 30 <static 39..87> | 1a 31 <payload 89..>
    const inEphemeral = (at: number) => at >= 5 && at < 37;
    const inSealed = (at: number) => (at >= 39 && at < 87) || at >= 89;
    for (let bit = 0; bit < good.length * 8; bit++) {
      const bytes = Uint8Array.from(good);
      bytes[bit >> 3]! ^= 1 << (bit & 7);
      const code = codeOf(bytes);
      expect(['proto_malformed', 'proto_mismatch'], `bit ${bit}`).toContain(code);
      const at = bit >> 3;
      if (inEphemeral(at) || inSealed(at)) {
        // flipping the ephemeral changes ee; flipping ciphertext breaks the tag
        expect(code, `bit ${bit}`).toBe('proto_mismatch');
      }
    }
  });

  it('random byte mutations, insertions and deletions', () => {
    for (let i = 0; i < 1000; i++) {
      const r = fuzzBytes(`mut-${i}`, 8);
      const at = ((r[0]! << 8) | r[1]!) % good.length;
      let bytes: Uint8Array;
      if (i % 3 === 0) bytes = Buffer.concat([good.subarray(0, at), good.subarray(at + 1 + (r[2]! % 8))]);
      else if (i % 3 === 1) bytes = Buffer.concat([good.subarray(0, at), r.subarray(3, 3 + 1 + (r[2]! % 5)), good.subarray(at)]);
      else {
        bytes = Uint8Array.from(good);
        bytes[at] = r[3]!;
        if (bytes[at] === good[at]) continue;
      }
      expect(['proto_malformed', 'proto_mismatch']).toContain(codeOf(bytes));
    }
  });
});
