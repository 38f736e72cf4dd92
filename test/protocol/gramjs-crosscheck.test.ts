/**
 * Independent cross-check against gramjs (npm `telegram`), an MTProto client callprobe shares no
 * code with: its TL serializer, its plain (unencrypted) sender, and its connection codecs
 * (network/connection: TCPAbridged, TCPFull, TCPObfuscated) must read what callprobe writes and
 * callprobe must read what they write.
 *
 * No network: gramjs's connection classes are given a fake socket class that only records writes
 * and serves reads from a buffer, and its plain sender a fake connection.
 *
 * Not covered here: the intermediate and padded intermediate transports, which gramjs 2.26 does
 * not implement (its obfuscated connection carries abridged only); those are checked against the
 * docs' layout in mtproto-transport.test.ts and end to end through obfuscated2 in obfuscated2.test.ts.
 */
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeReqPqMulti, decodeResPQ, encodeReqPqMulti, encodeResPQ, encodeUnencryptedMessage, serverResponseMessageId } from '../../src/protocol/mtproto.js';
import { TRANSPORT_TAG, createFrameDecoder, createFrameEncoder, type TransportFrame } from '../../src/protocol/mtproto-transport.js';
import { acceptObfuscated2Client, isForbiddenHeader, obfuscated2ClientFromHeader } from '../../src/protocol/obfuscated2.js';
import { fromHex, seededBytes, toHex } from '../helpers/bytes.js';

// gramjs is CommonJS; load it through Node's require so that patching its Helpers module below is
// seen by its connection classes (same module cache). Loading the package root first resolves its
// internal import cycle.
const require = createRequire(import.meta.url);
const telegram: any = require('telegram');
const helpers: any = require('telegram/Helpers');
const { BinaryReader }: any = require('telegram/extensions');
const { MTProtoPlainSender }: any = require('telegram/network/MTProtoPlainSender');
const { AbridgedPacketCodec }: any = require('telegram/network/connection/TCPAbridged');
const { FullPacketCodec }: any = require('telegram/network/connection/TCPFull');
const { ConnectionTCPObfuscated }: any = require('telegram/network/connection/TCPObfuscated');
const Api: any = telegram.Api;

const toGram128 = (b: Uint8Array) => helpers.readBigIntFromBuffer(Buffer.from(b), true, true);
const fromGram128 = (v: unknown) => helpers.readBufferFromBigInt(v, 16, true, true) as Buffer;
const toGramLong = (v: bigint) => {
  const le = Buffer.alloc(8);
  le.writeBigInt64LE(BigInt.asIntN(64, v));
  return helpers.readBigIntFromBuffer(le, true, true);
};
const fromGramLong = (v: { toString(): string }) => BigInt(v.toString());

const silentLog = { debug() {}, info() {}, warn() {}, error() {} };

/** Stands in for gramjs's PromisedNetSockets: records writes, serves reads from `inbox`. Never connects. */
class FakeSocket {
  written: Buffer[] = [];
  inbox = Buffer.alloc(0);
  async connect(): Promise<void> {}
  write(data: Uint8Array): void {
    this.written.push(Buffer.from(data));
  }
  async readExactly(n: number): Promise<Buffer> {
    if (this.inbox.length < n) throw new Error(`fake socket: ${n} bytes wanted, ${this.inbox.length} left`);
    const out = this.inbox.subarray(0, n);
    this.inbox = this.inbox.subarray(n);
    return out;
  }
  async read(n: number): Promise<Buffer> {
    return this.readExactly(n);
  }
  async close(): Promise<void> {}
}

function readerOver(stream: Uint8Array): FakeSocket {
  const s = new FakeSocket();
  s.inbox = Buffer.from(stream);
  return s;
}

function messages(frames: TransportFrame[]): string[] {
  return frames.map((f) => (f.kind === 'message' ? toHex(f.payload) : `error ${f.code}`));
}

const NONCE = fromHex('AC7EC649662ECF3CF3BA991B9D8DABD5');
const SERVER_NONCE = fromHex('6C8D9CF57754AE5A5CB305759A6050D0');
const FINGERPRINTS = [0x0bc35f3509f7b7a5n, 0xc3b42b026ce86b21n, 0xd09d1d85de64fd85n];

describe('TL: req_pq_multi and resPQ', () => {
  it('gramjs Api.ReqPqMulti.getBytes() equals the body callprobe sends', () => {
    const ours = encodeReqPqMulti(NONCE, 0x66c30d0d000da32cn).subarray(20);
    expect(toHex(new Api.ReqPqMulti({ nonce: toGram128(NONCE) }).getBytes())).toBe(toHex(ours));
  });

  it('gramjs BinaryReader reads the req_pq_multi callprobe sends', () => {
    const obj = new BinaryReader(Buffer.from(encodeReqPqMulti(NONCE, 4n).subarray(20))).tgReadObject();
    expect(obj.className).toBe('ReqPqMulti');
    expect(toHex(fromGram128(obj.nonce))).toBe(toHex(NONCE));
  });

  it('gramjs reads the resPQ callprobe encodes, and callprobe reads the one gramjs encodes (random values)', () => {
    const random = seededBytes('gramjs-respq');
    for (let i = 0; i < 200; i++) {
      const fields = {
        messageId: serverResponseMessageId(1.7e12 + i),
        nonce: random(16),
        serverNonce: random(16),
        pq: random((random(2).readUInt16LE() % 300) + 1),
        fingerprints: Array.from({ length: (random(1)[0] ?? 0) % 5 }, () => BigInt.asIntN(64, random(8).readBigUInt64LE())),
      };
      const ours = encodeResPQ(fields);
      const read = new BinaryReader(Buffer.from(ours.subarray(20))).tgReadObject();
      expect(read.className).toBe('ResPQ');
      expect(toHex(fromGram128(read.nonce))).toBe(toHex(fields.nonce));
      expect(toHex(fromGram128(read.serverNonce))).toBe(toHex(fields.serverNonce));
      expect(toHex(read.pq)).toBe(toHex(fields.pq));
      expect(read.serverPublicKeyFingerprints.map(fromGramLong)).toEqual(fields.fingerprints);

      const theirs = new Api.ResPQ({
        nonce: toGram128(fields.nonce),
        serverNonce: toGram128(fields.serverNonce),
        pq: Buffer.from(fields.pq),
        serverPublicKeyFingerprints: fields.fingerprints.map(toGramLong),
      }).getBytes();
      expect(toHex(theirs)).toBe(toHex(ours.subarray(20)));
      const decoded = decodeResPQ(encodeUnencryptedMessage(fields.messageId, theirs), fields.nonce);
      expect(decoded.fingerprints).toEqual(fields.fingerprints);
      expect(toHex(decoded.pq)).toBe(toHex(fields.pq));
    }
  });
});

describe('envelope: gramjs MTProtoPlainSender against callprobe as the DC', () => {
  async function exchange(answer: (req: { messageId: bigint; nonce: Uint8Array }) => Uint8Array) {
    const sent: Buffer[] = [];
    const connection = {
      async send(data: Buffer) {
        sent.push(Buffer.from(data));
      },
      async recv() {
        return Buffer.from(answer(decodeReqPqMulti(sent[0]!)));
      },
    };
    const sender = new MTProtoPlainSender(connection, silentLog);
    const result = await sender.send(new Api.ReqPqMulti({ nonce: toGram128(NONCE) }));
    return { sent: sent[0]!, result };
  }

  it('callprobe reads the unencrypted message gramjs sends; gramjs reads the resPQ callprobe answers', async () => {
    const { sent, result } = await exchange((req) =>
      encodeResPQ({ messageId: req.messageId + 1n, nonce: req.nonce, serverNonce: SERVER_NONCE, pq: fromHex('1be363a46f8edfc1'), fingerprints: FINGERPRINTS }),
    );
    const req = decodeReqPqMulti(sent);
    expect(sent.length).toBe(40);
    expect(req.messageId % 4n).toBe(0n);
    expect(toHex(req.nonce)).toBe(toHex(NONCE));
    expect(result.className).toBe('ResPQ');
    expect(toHex(fromGram128(result.nonce))).toBe(toHex(NONCE));
    expect(result.serverPublicKeyFingerprints.map(fromGramLong)).toEqual(FINGERPRINTS.map((f) => BigInt.asIntN(64, f)));
  });

  it('gramjs, like callprobe, accepts the docs-style length field that claims more than the body (0x90 for 80)', async () => {
    const { result } = await exchange((req) =>
      encodeResPQ({ messageId: 5n, nonce: req.nonce, serverNonce: SERVER_NONCE, pq: fromHex('1be363a46f8edfc1'), fingerprints: FINGERPRINTS, declaredLength: 0x90 }),
    );
    expect(toHex(result.pq)).toBe('1be363a46f8edfc1');
  });
});

describe('abridged: gramjs AbridgedPacketCodec', () => {
  const sizes = [4, 40, 100, 504, 508, 1024, 4000];

  it('uses the same tag and frames payloads byte for byte like callprobe (1-byte and 7F lengths)', () => {
    expect(toHex(AbridgedPacketCodec.tag)).toBe(toHex(TRANSPORT_TAG.abridged));
    const codec = new AbridgedPacketCodec({});
    const ours = createFrameEncoder('abridged', { sendTag: false });
    for (const n of sizes) {
      const payload = Buffer.alloc(n, n & 0xff);
      expect(toHex(codec.encodePacket(payload))).toBe(toHex(ours.encode(payload)));
    }
  });

  it('gramjs readPacket reads the stream callprobe writes', async () => {
    const payloads = sizes.map((n) => Buffer.alloc(n, 7));
    const ours = createFrameEncoder('abridged', { sendTag: false });
    const socket = readerOver(Buffer.concat(payloads.map((p) => ours.encode(p))));
    const codec = new AbridgedPacketCodec({});
    for (const p of payloads) expect(toHex(await codec.readPacket(socket))).toBe(toHex(p));
  });

  it('callprobe decodes the stream gramjs writes (tag + frames, server side)', () => {
    const payloads = sizes.map((n) => Buffer.alloc(n, 9));
    const codec = new AbridgedPacketCodec({});
    const stream = Buffer.concat([AbridgedPacketCodec.tag, ...payloads.map((p) => codec.encodePacket(p))]);
    expect(messages(createFrameDecoder('abridged', { expectTag: true }).push(stream))).toEqual(payloads.map(toHex));
  });
});

describe('full: gramjs FullPacketCodec (its own CRC32)', () => {
  it('frames byte for byte like callprobe, seq counting from 0', () => {
    const codec = new FullPacketCodec({});
    const ours = createFrameEncoder('full');
    for (const n of [4, 40, 100, 3000]) {
      const payload = Buffer.alloc(n, 0x42);
      expect(toHex(codec.encodePacket(payload))).toBe(toHex(ours.encode(payload)));
    }
  });

  it('each reads the other', async () => {
    const payloads = [40, 100, 3000].map((n) => Buffer.alloc(n, 0x24));
    const ours = createFrameEncoder('full');
    const socket = readerOver(Buffer.concat(payloads.map((p) => ours.encode(p))));
    const reader = new FullPacketCodec({});
    for (const p of payloads) expect(toHex(await reader.readPacket(socket))).toBe(toHex(p));

    const writer = new FullPacketCodec({});
    const stream = Buffer.concat(payloads.map((p) => writer.encodePacket(p)));
    expect(messages(createFrameDecoder('full').push(stream))).toEqual(payloads.map(toHex));
  });
});

describe('obfuscated2: gramjs ConnectionTCPObfuscated (abridged inside)', () => {
  const originalRandom = helpers.generateRandomBytes;
  afterEach(() => {
    helpers.generateRandomBytes = originalRandom;
  });

  /** Makes gramjs draw these 64 bytes for its header (its Helpers.generateRandomBytes, looked up at call time). */
  function gramjsHeaderFrom(random64: Buffer): void {
    helpers.generateRandomBytes = (n: number) => (n === 64 ? Buffer.from(random64) : originalRandom(n));
  }

  async function gramjsConnection(): Promise<{ conn: any; socket: FakeSocket }> {
    const conn = new ConnectionTCPObfuscated({ ip: '127.0.0.1', port: 443, dcId: 2, loggers: silentLog, socket: FakeSocket });
    await conn._connect(); // FakeSocket.connect does nothing; this only builds the header and codec
    return { conn, socket: conn.socket as FakeSocket };
  }

  it('from the same random bytes, gramjs and callprobe put the same 64-byte header and ciphertext on the wire', async () => {
    const random64 = seededBytes('gramjs-o2')(64);
    random64[0] = 0x10; // allowed by both filters
    random64[4] = 0x11;
    gramjsHeaderFrom(random64);
    const { conn, socket } = await gramjsConnection();

    // gramjs writes the tag but not the DC id (bytes 60-61 stay random), so callprobe is given that id.
    const plain = Buffer.from(random64);
    plain.writeUInt32LE(0xefefefef, 56);
    const ours = obfuscated2ClientFromHeader(plain);
    expect(toHex(socket.written[0]!)).toBe(toHex(ours.header));

    const payload = encodeReqPqMulti(NONCE, 0x66c30d0d000da32cn);
    await conn._send(Buffer.from(payload));
    expect(toHex(socket.written[1]!)).toBe(toHex(ours.encrypt(createFrameEncoder('abridged', { sendTag: false }).encode(payload))));
  });

  it('callprobe as the DC decrypts what gramjs sends and gramjs decrypts what callprobe answers', async () => {
    const { conn, socket } = await gramjsConnection(); // gramjs's own random header
    const server = acceptObfuscated2Client(socket.written[0]!);
    expect(server.transport).toBe('abridged');

    await conn._send(Buffer.from(encodeReqPqMulti(NONCE, 8n)));
    const [frame] = createFrameDecoder('abridged').push(server.decrypt(socket.written[1]!));
    if (frame?.kind !== 'message') throw new Error('expected a message frame');
    const req = decodeReqPqMulti(frame.payload);
    expect(toHex(req.nonce)).toBe(toHex(NONCE));

    const answer = encodeResPQ({ messageId: 9n, nonce: req.nonce, serverNonce: SERVER_NONCE, pq: fromHex('1be363a46f8edfc1'), fingerprints: FINGERPRINTS });
    socket.inbox = Buffer.from(server.encrypt(createFrameEncoder('abridged', { sendTag: false }).encode(answer)));
    expect(toHex(await conn._recv())).toBe(toHex(answer));
  });

  it("gramjs's header filter is incomplete: it sends starts that tdlib (and callprobe) redraw", async () => {
    // gramjs checks byte 0 != EF, bytes 4-7 != 0 and the first word against "PVrG", "GET" (3 bytes,
    // so it never matches a 4-byte word), "POST" and EEEEEEEE. tdlib also forbids these:
    const missed = ['GET ', 'HEAD', 'OPTI'].map((s) => Buffer.from(s)).concat([fromHex('dddddddd'), fromHex('16030102')]);
    for (const start of missed) {
      const random64 = Buffer.alloc(64, 0x33);
      start.copy(random64, 0);
      let draws = 0;
      helpers.generateRandomBytes = (n: number) => {
        if (n === 64) draws++;
        return n === 64 ? Buffer.from(random64) : originalRandom(n);
      };
      const { socket } = await gramjsConnection();
      expect(draws).toBe(1); // gramjs kept it
      expect(toHex(socket.written[0]!.subarray(0, 4))).toBe(toHex(start));
      expect(isForbiddenHeader(random64)).toBe(true); // callprobe would draw again
    }
  });

  it('gramjs does not write the DC id at bytes 60-61 (tdlib does)', async () => {
    const random64 = Buffer.alloc(64, 0x33);
    gramjsHeaderFrom(random64);
    const { socket } = await gramjsConnection(); // asked for dcId 2
    expect(acceptObfuscated2Client(socket.written[0]!).dcId).toBe(0x3333);
  });
});
