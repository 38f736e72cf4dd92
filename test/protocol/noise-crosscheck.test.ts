/**
 * Independent cross-check of noise.ts against noise-c (rweather/noise-c, the Noise reference C
 * implementation, compiled to WebAssembly as the `noise-c.wasm` npm package).
 *
 * How the vector is computed: noise-c's HandshakeState cannot be used as is, because it would hash
 * the empty first payload, which WhatsApp does not. So the test drives noise-c's SymmetricState
 * (SHA-256, HKDF, AES-256-GCM with the Noise nonce layout) by hand, calling the spec's operations
 * in WhatsApp's order:
 *   SymmetricState("Noise_XX_25519_AESGCM_SHA256")   -- noise-c zero-pads the 28-byte name to 32
 *   MixHash(header 57 41 06 03); MixHash(client e)    -- and NOT MixHash(empty payload)
 *   MixHash(server e); MixKey(X25519(e, server e))
 *   static = DecryptAndHash(sealed static); MixKey(X25519(e, static))
 *   payload = DecryptAndHash(sealed payload)
 * noise.wasm exports no raw DH, so X25519 comes from @noble/curves (not OpenSSL, which noise.ts
 * uses). h and ck are read from noise-c's NoiseSymmetricState in wasm memory: the exported helper
 * SymmetricState_get_ck gives the address of `ck[64]`, and `h[64]` follows it (noise-c
 * src/protocol/internal.h struct NoiseSymmetricState_s); the test checks that reading against the
 * known initial value (the padded protocol name) before relying on it.
 * Keys are fixed (SHA-256 of a label), so the ServerHello, h and ck are fixed: the pinned values
 * below were produced by noise-c this way and must equal what callprobe computes.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { answerClientHello, WaNoiseClient, x25519KeyPairFromPrivate } from '../../src/protocol/noise.js';
import { connectionHeader } from '../../src/protocol/waframe.js';
import { verifyCertChain } from '../../src/protocol/wacert.js';
import { newLabWhatsAppIdentity } from '../helpers/wacerts.js';
import { toHex } from '../helpers/bytes.js';

interface NoiseSymmetricState {
  _state: number;
  MixHash(data: Uint8Array): void;
  MixKey(ikm: Uint8Array): void;
  EncryptAndHash(plaintext: Uint8Array): Uint8Array;
  DecryptAndHash(ciphertext: Uint8Array): Uint8Array;
  free(): void;
}
interface NoiseC {
  SymmetricState(protocolName: string): NoiseSymmetricState;
  _lib_internal: {
    HEAPU8: Uint8Array;
    allocatePointer(): { get(as: Uint32ArrayConstructor): Uint32Array; free(): void } & number;
    _SymmetricState_get_ck(state: number, out: number): number;
  };
}

const require = createRequire(import.meta.url);
function loadNoiseC(): Promise<NoiseC> {
  const createNoise = require('noise-c.wasm') as (options: object, callback: (noise: NoiseC) => void) => void;
  // Hand it the wasm bytes: its loader would otherwise try fetch() on a file path first.
  const wasmBinary = readFileSync(require.resolve('noise-c.wasm/src/noise-c.wasm'));
  return new Promise((resolve) => createNoise({ wasmBinary }, resolve));
}

/** ck and h as noise-c holds them (see the header comment for the layout). */
function readState(noise: NoiseC, ss: NoiseSymmetricState): { ck: string; h: string } {
  const lib = noise._lib_internal;
  const out = lib.allocatePointer();
  lib._SymmetricState_get_ck(ss._state, out);
  const ckAddress = out.get(Uint32Array)[0]!;
  out.free();
  const heap = lib.HEAPU8; // read after the call: memory growth replaces the view
  return { ck: toHex(heap.subarray(ckAddress, ckAddress + 32)), h: toHex(heap.subarray(ckAddress + 64, ckAddress + 96)) };
}

const fixedKey = (label: string) => x25519KeyPairFromPrivate(createHash('sha256').update(label).digest());
const dh = (privateKey: Uint8Array, publicKey: Uint8Array) => nobleX25519.getSharedSecret(privateKey, publicKey);

const HEADER = connectionHeader(6, 3);
const CLIENT_E = fixedKey('callprobe noise vector: client ephemeral');
const SERVER_E = fixedKey('callprobe noise vector: server ephemeral');
const SERVER_S = fixedKey('callprobe noise vector: server static');
const PAYLOAD = Buffer.from('callprobe vector payload'); // 24 bytes: every protobuf length fits one byte

/** Hand-built HandshakeMessage{serverHello{ephemeral, static, payload}} (tags 1a; 0a, 12, 1a), lengths < 128. */
function serverHelloBytes(e: Uint8Array, sealedStatic: Uint8Array, sealedPayload: Uint8Array): Uint8Array {
  const inner = Buffer.concat([
    Uint8Array.of(0x0a, e.length), e,
    Uint8Array.of(0x12, sealedStatic.length), sealedStatic,
    Uint8Array.of(0x1a, sealedPayload.length), sealedPayload,
  ]);
  expect(inner.length).toBeLessThan(128);
  return Buffer.concat([Uint8Array.of(0x1a, inner.length), inner]);
}

/** The pinned vector (see the header comment), as noise-c produced it. */
const VECTOR = {
  clientFirstBytes: '5741060300002412220a20b18bf3bd1ef84811ffd6008a596f204a4201449c33c4e256d6de8982837ca50d',
  hAfterClientHello: '04d5a8466cadecd1b6705dfeb00c381cda1fda1516379283ed2e8bc1c74c618b',
  serverHello:
    '1a7e0a207405322639244602fbe5413da3174a53b53c240f465ed4718bf6fa81' +
    '57f54b7e1230fe1c6bc79f0fb6e932590732ce7d22df1dad9ac9df11c5ea4297' +
    '7a29ccb4c8c50cdae801f74fe1c4572351f45c2e0e761a28e9b6d8a641d52898' +
    '3b26c3eefaf06c5768cc8589461369a003b80a4304557ccf90e35c0a6dc128ce',
  h: 'c9f281aa39e08aa922b4e388301acb1d78dfe909fecbd63813b66545905a8ede',
  ck: '6bd67aec43ae692fd3578a97e1cac370e73fb71499ef5d2224b30a5c9f8c2073',
};

let noise: NoiseC;
beforeAll(async () => {
  noise = await loadNoiseC();
});

describe('noise-c cross-check', () => {
  it('reads noise-c state correctly: h = ck = the zero-padded protocol name, which is WhatsApp\'s raw 32-byte name', () => {
    const ss = noise.SymmetricState('Noise_XX_25519_AESGCM_SHA256');
    const name = toHex(Buffer.from('Noise_XX_25519_AESGCM_SHA256\0\0\0\0', 'latin1'));
    expect(readState(noise, ss)).toEqual({ ck: name, h: name });
    ss.MixHash(HEADER);
    expect(readState(noise, ss).h).toBe(toHex(createHash('sha256').update(Buffer.from(name, 'hex')).update(HEADER).digest()));
    ss.free();
  });

  it('noise-c reading callprobe\'s ServerHello reaches the same h, ck, static key and payload', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const answer = answerClientHello({ header: HEADER, clientHello: client.clientHello, static: SERVER_S, ephemeral: SERVER_E, payload: PAYLOAD });
    const opened = client.readServerHello(answer.serverHello);

    // Split the ServerHello by hand (layout asserted in serverHelloBytes).
    const hello = answer.serverHello;
    const e = hello.subarray(4, 36);
    const sealedStatic = hello.subarray(38, 86);
    const sealedPayload = hello.subarray(88);

    const ss = noise.SymmetricState('Noise_XX_25519_AESGCM_SHA256');
    ss.MixHash(HEADER);
    ss.MixHash(CLIENT_E.publicKey);
    // WhatsApp's deviation: no MixHash of the empty payload here.
    expect(readState(noise, ss).h).toBe(toHex(client.handshakeHash));
    ss.MixHash(e);
    ss.MixKey(dh(CLIENT_E.privateKey, e));
    const serverStatic = ss.DecryptAndHash(sealedStatic);
    ss.MixKey(dh(CLIENT_E.privateKey, serverStatic));
    const payload = ss.DecryptAndHash(sealedPayload);
    const state = readState(noise, ss);
    ss.free();

    expect(toHex(serverStatic)).toBe(toHex(SERVER_S.publicKey));
    expect(toHex(opened.serverStatic)).toBe(toHex(serverStatic));
    expect(Buffer.from(payload).toString()).toBe(PAYLOAD.toString());
    expect(toHex(opened.certChain)).toBe(toHex(payload));
    expect(state).toEqual({ ck: toHex(opened.chainingKey), h: toHex(opened.handshakeHash) });
    expect(state).toEqual({ ck: toHex(answer.chainingKey), h: toHex(answer.handshakeHash) });
  });

  it('noise-c sealing a ServerHello produces the very bytes callprobe\'s server does, and callprobe\'s client opens it', () => {
    const ss = noise.SymmetricState('Noise_XX_25519_AESGCM_SHA256');
    ss.MixHash(HEADER);
    ss.MixHash(CLIENT_E.publicKey);
    const hAfterClientHello = readState(noise, ss).h;
    ss.MixHash(SERVER_E.publicKey);
    ss.MixKey(dh(SERVER_E.privateKey, CLIENT_E.publicKey));
    const sealedStatic = ss.EncryptAndHash(SERVER_S.publicKey);
    ss.MixKey(dh(SERVER_S.privateKey, CLIENT_E.publicKey));
    const sealedPayload = ss.EncryptAndHash(PAYLOAD);
    const state = readState(noise, ss);
    ss.free();
    const hello = serverHelloBytes(SERVER_E.publicKey, sealedStatic, sealedPayload);

    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const ours = answerClientHello({ header: HEADER, clientHello: client.clientHello, static: SERVER_S, ephemeral: SERVER_E, payload: PAYLOAD });
    expect(toHex(ours.serverHello)).toBe(toHex(hello));
    const opened = client.readServerHello(hello);
    expect(toHex(opened.serverStatic)).toBe(toHex(SERVER_S.publicKey));
    expect(state).toEqual({ ck: toHex(opened.chainingKey), h: toHex(opened.handshakeHash) });

    // The pinned vector.
    expect(toHex(client.firstBytes)).toBe(VECTOR.clientFirstBytes);
    expect(hAfterClientHello).toBe(VECTOR.hAfterClientHello);
    expect(toHex(hello)).toBe(VECTOR.serverHello);
    expect(state).toEqual({ h: VECTOR.h, ck: VECTOR.ck });
  });

  it('the Noise spec\'s own order (with MixHash of the empty payload) cannot open WhatsApp\'s ServerHello: the deviation matters', () => {
    const client = new WaNoiseClient({ header: HEADER, ephemeral: CLIENT_E });
    const hello = answerClientHello({ header: HEADER, clientHello: client.clientHello, static: SERVER_S, ephemeral: SERVER_E, payload: PAYLOAD }).serverHello;
    const ss = noise.SymmetricState('Noise_XX_25519_AESGCM_SHA256');
    ss.MixHash(HEADER);
    ss.MixHash(CLIENT_E.publicKey);
    ss.MixHash(new Uint8Array(0)); // Noise spec: EncryptAndHash(empty payload) with no key = MixHash("")
    ss.MixHash(hello.subarray(4, 36));
    ss.MixKey(dh(CLIENT_E.privateKey, hello.subarray(4, 36)));
    // noise-c frees the state itself when it reports an error
    expect(() => ss.DecryptAndHash(hello.subarray(38, 86))).toThrow('NOISE_ERROR_MAC_FAILURE');
  });

  it('a real lab certificate chain sealed by noise-c opens and verifies in callprobe', () => {
    const lab = newLabWhatsAppIdentity(1_780_000_000);
    const client = new WaNoiseClient({ header: HEADER });
    const ss = noise.SymmetricState('Noise_XX_25519_AESGCM_SHA256');
    ss.MixHash(HEADER);
    ss.MixHash(client.ephemeral.publicKey);
    const e = nobleX25519.utils.randomSecretKey();
    const ePub = nobleX25519.getPublicKey(e);
    ss.MixHash(ePub);
    ss.MixKey(dh(e, client.ephemeral.publicKey));
    const sealedStatic = ss.EncryptAndHash(lab.static.publicKey);
    ss.MixKey(dh(lab.static.privateKey, client.ephemeral.publicKey));
    const sealedPayload = ss.EncryptAndHash(lab.certChain.payload);
    const state = readState(noise, ss);
    ss.free();
    // lengths over 127 need two-byte varints: build the message with them
    const field = (tag: number, v: Uint8Array) => Buffer.concat([Uint8Array.of(tag), varint(v.length), v]);
    const hello = field(0x1a, Buffer.concat([field(0x0a, ePub), field(0x12, sealedStatic), field(0x1a, sealedPayload)]));

    const opened = client.readServerHello(hello);
    expect(state).toEqual({ ck: toHex(opened.chainingKey), h: toHex(opened.handshakeHash) });
    expect(
      verifyCertChain(opened.certChain, { serverStatic: opened.serverStatic, now: 1_780_000_000, rootPublicKey: lab.root.publicKey }).verified,
    ).toBe(true);
  });
});

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Uint8Array.from(out);
}
