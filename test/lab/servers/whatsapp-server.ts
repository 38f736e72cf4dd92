/**
 * A lab WhatsApp chat server: reads the connection header and ClientHello (over TCP, or inside
 * WebSocket binary messages over ws:// or wss://) and answers like WhatsApp's first handshake
 * round trip, or misbehaves in one of the ways a censor's middlebox would:
 *
 *   ok          a correct ServerHello: the static key and a certificate chain signed by the lab
 *               root, sealed for the client's own ephemeral
 *   replay      a ServerHello recorded from another session (correct in itself, sealed for an
 *               ephemeral that is not the client's): what a middlebox replaying traffic sends
 *   garbage     a frame whose bytes are not a protobuf HandshakeMessage
 *   wrong-root  a correct ServerHello whose chain is signed by a root the probe does not trust
 *   oversized   a frame length of ff ff ff (16 MB) and 1 KiB of it, then, after a pause, the rest
 *               as fast as the peer takes it: a probe that buffers declared lengths would eat it
 *   silent      reads the ClientHello, never answers
 *
 * Independent of callprobe's Noise code: the ServerHello is sealed with noise-c (rweather/noise-c,
 * the Noise reference implementation, as the `noise-c.wasm` package; its SymmetricState driven in
 * WhatsApp's order, as test/protocol/noise-crosscheck.test.ts establishes) with X25519 from
 * @noble/curves, and the chain is signed with Signal's libsignal (test/helpers/wacerts.ts). Only
 * the framing and protobuf codecs are shared with src/.
 *
 *   node --import tsx test/lab/servers/whatsapp-server.ts --config '{"listeners":[...]}'
 *
 * Prints `READY {...}` (listeners and ports, the lab root key, the static key, the chain's serials
 * and validity, answer sizes), then an `EVENT {...}` line per accept, upgrade, hello, answer and
 * close, like servers/echo-server.ts. Tests in the same process use startWhatsAppServer().
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createRequire } from 'node:module';
import { createServer as createTcpServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { resolve } from 'node:path';
import type { Duplex } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { x25519 } from '@noble/curves/ed25519.js';
import { WebSocketServer, type RawData } from 'ws';
import { z } from 'zod';
import type { X25519KeyPair } from '../../../src/protocol/noise.js';
import { connectionHeader, encodeFrame, FrameDecoder, WA_HEADER_LENGTH } from '../../../src/protocol/waframe.js';
import { decodeHandshakeMessage, encodeHandshakeMessage } from '../../../src/protocol/waproto.js';
import { buildLabCertChain, newLabWhatsAppIdentity, newSigningKey } from '../../helpers/wacerts.js';

const MODES = ['ok', 'replay', 'garbage', 'wrong-root', 'oversized', 'silent'] as const;
export type WhatsAppServerMode = (typeof MODES)[number];

const base = {
  name: z.string().optional(),
  host: z.string().default('0.0.0.0'),
  port: z.number().int().min(0).max(65535),
  mode: z.enum(MODES).default('ok'),
  /** Send the answer in two pieces 20 ms apart (frames need not align with reads or messages). */
  split: z.boolean().default(false),
};
const Listener = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('tcp'), ...base }),
  z.strictObject({
    kind: z.literal('ws'),
    ...base,
    tls: z.strictObject({ cert: z.string(), key: z.string() }).optional(),
    /** Paths whose upgrade is refused with this HTTP status. */
    refuse: z.record(z.string(), z.number().int().min(200).max(599)).default({}),
  }),
]);
export type WhatsAppListener = z.input<typeof Listener>;
const Config = z.strictObject({ listeners: z.array(Listener).min(1) });

export interface WhatsAppServerEvent {
  event: 'accept' | 'upgrade' | 'hello' | 'answer' | 'close' | 'bad-client';
  listener: string;
  peer: string;
  [key: string]: unknown;
}

/** What a test needs to know to assert exact evidence. */
export interface WhatsAppServerInfo {
  listeners: Array<{ name: string; port: number }>;
  /** The lab root's Curve25519 public key (hex): the probe's `rootKey` param. */
  rootKey: string;
  /** The server's static X25519 public key (hex): what the probe decrypts. */
  staticKey: string;
  chain: {
    intermediateSerial: number;
    leafSerial: number;
    /** Unix seconds; the intermediate and the leaf share it. */
    validity: { notBefore: number; notAfter: number };
  };
  /** Bytes of each kind of answer, framed (ok, replay and wrong-root have the same size). */
  answerBytes: { serverHello: number; garbage: number; oversizedFirst: number };
}

export interface RunningWhatsAppServer {
  info: WhatsAppServerInfo;
  close(): Promise<void>;
}

/** The frame garbage mode sends: 0xff bytes are an endless varint, never a protobuf message. */
const GARBAGE_FRAME = encodeFrame(new Uint8Array(32).fill(0xff));
/** ff ff ff = 16 777 215 declared bytes (waframe.ts PROTOCOL_MAX_FRAME_SIZE), of which the first 1 KiB goes out at once. */
const OVERSIZED_LENGTH = 0xff_ffff;
const OVERSIZED_FIRST = Buffer.concat([Buffer.from([0xff, 0xff, 0xff]), Buffer.alloc(1021)]);
const OVERSIZED_PAUSE_MS = 500;
const OVERSIZED_CHUNK = 64 * 1024;
/** What the server accepts from a client: a ClientHello is 36 bytes. */
const MAX_CLIENT_FRAME = 64 * 1024;

// --- Noise, sealed by noise-c ----------------------------------------------------------------

interface NoiseCSymmetricState {
  MixHash(data: Uint8Array): void;
  MixKey(inputKeyMaterial: Uint8Array): void;
  EncryptAndHash(plaintext: Uint8Array): Uint8Array;
  free(): void;
}
interface NoiseC {
  SymmetricState(protocolName: string): NoiseCSymmetricState;
}

const require = createRequire(import.meta.url);
let noiseC: Promise<NoiseC> | undefined;
function loadNoise(): Promise<NoiseC> {
  // The wasm bytes are handed over: the package's loader would otherwise try fetch() on a path.
  const create = require('noise-c.wasm') as (options: object, ready: (lib: NoiseC) => void) => void;
  noiseC ??= new Promise((done) => create({ wasmBinary: readFileSync(require.resolve('noise-c.wasm/src/noise-c.wasm')) }, done));
  return noiseC;
}

/**
 * WhatsApp's ServerHello for a client ephemeral (docs/protocols.md#the-first-round-trip): h and ck start from the protocol
 * name, MixHash(header), MixHash(client e) and no MixHash of the empty payload (the deviation),
 * then e, ee, s (encrypted), es, payload (encrypted).
 */
function sealServerHello(noise: NoiseC, header: Uint8Array, clientEphemeral: Uint8Array, staticKey: X25519KeyPair, payload: Uint8Array): Uint8Array {
  const e = x25519.utils.randomSecretKey();
  const ePublic = x25519.getPublicKey(e);
  // noise-c zero-pads the 28-byte name to 32, which is WhatsApp's raw name with its four NULs.
  const ss = noise.SymmetricState('Noise_XX_25519_AESGCM_SHA256');
  ss.MixHash(header);
  ss.MixHash(clientEphemeral);
  ss.MixHash(ePublic);
  ss.MixKey(x25519.getSharedSecret(e, clientEphemeral));
  const sealedStatic = ss.EncryptAndHash(staticKey.publicKey);
  ss.MixKey(x25519.getSharedSecret(staticKey.privateKey, clientEphemeral));
  const sealedPayload = ss.EncryptAndHash(payload);
  ss.free(); // noise-c frees a state itself when it reports an error, so only here
  return encodeFrame(encodeHandshakeMessage({ serverHello: { ephemeral: ePublic, static: sealedStatic, payload: sealedPayload } }));
}

// --- connections -----------------------------------------------------------------------------

/** One client connection, whatever carries it. */
interface Link {
  readonly peer: string;
  readonly open: boolean;
  /** Resolves once the bytes were handed to the kernel; rejects when the link failed. */
  write(bytes: Uint8Array): Promise<void>;
  destroy(): void;
}

interface Answers {
  noise: NoiseC;
  identity: ReturnType<typeof newLabWhatsAppIdentity>;
  wrongRootChain: Uint8Array;
  recorded: Uint8Array;
}

function serveLink(
  listener: z.output<typeof Listener> & { name: string },
  link: Link,
  answers: Answers,
  emit: (e: WhatsAppServerEvent) => void,
): { data(chunk: Uint8Array): void; closed(error?: string): void } {
  const decoder = new FrameDecoder({ headerLength: WA_HEADER_LENGTH, maxFrameSize: MAX_CLIENT_FRAME });
  const ev = (event: WhatsAppServerEvent['event'], fields: Record<string, unknown> = {}): void =>
    emit({ event, listener: listener.name, peer: link.peer, ...fields });
  let bytesIn = 0;
  let bytesOut = 0;
  let answered = false;
  let closed = false;

  const send = async (bytes: Uint8Array): Promise<void> => {
    if (!link.open) return;
    await link.write(bytes);
    bytesOut += bytes.length;
  };
  const sendAnswer = async (bytes: Uint8Array): Promise<void> => {
    if (!listener.split) return send(bytes);
    const half = Math.floor(bytes.length / 2);
    await send(bytes.subarray(0, half));
    await new Promise((r) => setTimeout(r, 20));
    await send(bytes.subarray(half));
  };

  const answer = async (header: Uint8Array, clientHello: Uint8Array): Promise<void> => {
    const ephemeral = decodeHandshakeMessage(clientHello).clientHello?.ephemeral;
    if (ephemeral?.length !== 32) throw new Error('not a ClientHello with a 32-byte ephemeral');
    ev('hello', { header: Buffer.from(header).toString('hex'), helloBytes: clientHello.length });
    const { identity, noise } = answers;
    switch (listener.mode) {
      case 'ok':
      case 'wrong-root': {
        const chain = listener.mode === 'ok' ? identity.certChain.payload : answers.wrongRootChain;
        const frame = sealServerHello(noise, header, ephemeral, identity.static, chain);
        ev('answer', { mode: listener.mode, bytes: frame.length });
        return sendAnswer(frame);
      }
      case 'replay':
        ev('answer', { mode: 'replay', bytes: answers.recorded.length });
        return sendAnswer(answers.recorded);
      case 'garbage':
        ev('answer', { mode: 'garbage', bytes: GARBAGE_FRAME.length });
        return sendAnswer(GARBAGE_FRAME);
      case 'oversized': {
        ev('answer', { mode: 'oversized', bytes: OVERSIZED_FIRST.length, declaredLength: OVERSIZED_LENGTH });
        await send(OVERSIZED_FIRST);
        await new Promise((r) => setTimeout(r, OVERSIZED_PAUSE_MS));
        // The rest of the declared body, as fast as the peer takes it, until it hangs up.
        let left = OVERSIZED_LENGTH + 3 - OVERSIZED_FIRST.length;
        const chunk = Buffer.alloc(OVERSIZED_CHUNK);
        while (left > 0 && link.open) {
          const n = Math.min(left, chunk.length);
          await send(chunk.subarray(0, n));
          left -= n;
        }
        return;
      }
      case 'silent':
        return;
    }
  };

  return {
    data(chunk) {
      bytesIn += chunk.length;
      if (answered) return; // the probe stops after the ServerHello; nothing else is read
      let frames: Uint8Array[];
      try {
        frames = decoder.push(chunk);
        const header = decoder.header;
        if (header && (header[0] !== 0x57 || header[1] !== 0x41)) throw new Error(`connection header ${Buffer.from(header).toString('hex')} does not start with WA`);
      } catch (err) {
        ev('bad-client', { error: (err as Error).message });
        link.destroy();
        return;
      }
      if (frames.length === 0) return;
      answered = true;
      answer(decoder.header!, frames[0]!).catch((err: unknown) => {
        if (link.open) {
          ev('bad-client', { error: (err as Error).message });
          link.destroy();
        }
      });
    },
    closed(error) {
      if (closed) return;
      closed = true;
      ev('close', { bytesIn, bytesOut, ...(error ? { error } : {}) });
    },
  };
}

function tcpLink(socket: Socket): Link {
  return {
    peer: `${socket.remoteAddress}:${socket.remotePort}`,
    get open() {
      return !socket.destroyed && socket.writable;
    },
    write: (bytes) => new Promise((done, fail) => socket.write(bytes, (err) => (err ? fail(err) : done()))),
    destroy: () => socket.destroy(),
  };
}

function listen(server: NetServer | HttpServer, host: string, port: number): Promise<number> {
  return new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => done((server.address() as AddressInfo).port));
  });
}

async function start(
  l: z.output<typeof Listener>,
  answers: Answers,
  emit: (e: WhatsAppServerEvent) => void,
): Promise<{ name: string; port: number; close: () => Promise<void> }> {
  const name = l.name ?? `${l.kind}:${l.mode}:${l.port}`;
  const listener = { ...l, name };
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  let server: NetServer | HttpServer;
  let wss: WebSocketServer | undefined;
  if (l.kind === 'tcp') {
    server = createTcpServer((socket) => {
      track(socket);
      const link = tcpLink(socket);
      emit({ event: 'accept', listener: name, peer: link.peer });
      const conn = serveLink(listener, link, answers, emit);
      socket.on('data', (d: Buffer) => conn.data(d));
      socket.on('end', () => socket.end());
      socket.on('error', (err: NodeJS.ErrnoException) => conn.closed(err.code ?? err.message));
      socket.on('close', () => conn.closed());
    });
  } else {
    const refuse = l.refuse;
    const http = l.tls ? createHttpsServer({ cert: readFileSync(l.tls.cert), key: readFileSync(l.tls.key) }) : createHttpServer();
    http.on('connection', track);
    http.on('secureConnection', track);
    http.on('request', (_req, res) => res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket only\n'));
    wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CLIENT_FRAME });
    const upgrades = wss;
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = (req.url ?? '/').split('?')[0]!;
      const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
      const origin = req.headers.origin ?? null;
      const status = refuse[path];
      if (status !== undefined) {
        emit({ event: 'upgrade', listener: name, peer, path, origin, status });
        socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Refused'}\r\nServer: lab-whatsapp\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      upgrades.handleUpgrade(req, socket, head, (ws) => {
        emit({ event: 'upgrade', listener: name, peer, path, origin, status: 101 });
        const link: Link = {
          peer,
          get open() {
            return ws.readyState === ws.OPEN;
          },
          write: (bytes) => new Promise((done, fail) => ws.send(bytes, { binary: true }, (err) => (err ? fail(err) : done()))),
          destroy: () => ws.terminate(),
        };
        const conn = serveLink(listener, link, answers, emit);
        ws.on('message', (data: RawData) => conn.data(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)));
        ws.on('error', (err: Error) => conn.closed(err.message));
        ws.on('close', () => conn.closed());
      });
    });
    server = http;
  }
  const port = await listen(server, l.host, l.port);
  return {
    name,
    port,
    close: async () => {
      for (const c of wss?.clients ?? []) c.terminate();
      for (const s of sockets) s.destroy();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

/**
 * Starts every listener with one lab identity (root, intermediate, static key, chain) and the
 * recorded session that replay mode sends. Events go to `onEvent`.
 */
export async function startWhatsAppServer(
  config: { listeners: WhatsAppListener[] },
  onEvent: (e: WhatsAppServerEvent) => void = () => {},
): Promise<RunningWhatsAppServer> {
  const { listeners } = Config.parse(config);
  const noise = await loadNoise();
  const identity = newLabWhatsAppIdentity();
  const wrongRootChain = buildLabCertChain({ root: newSigningKey(), intermediate: identity.intermediate, leafKey: identity.static.publicKey }).payload;
  // Another session: another client's ephemeral, answered correctly, kept for replay mode.
  const otherClient = x25519.getPublicKey(x25519.utils.randomSecretKey());
  const recorded = sealServerHello(noise, connectionHeader(6, 3), otherClient, identity.static, identity.certChain.payload);
  const answers: Answers = { noise, identity, wrongRootChain, recorded };
  const started = await Promise.all(listeners.map((l) => start(l, answers, onEvent)));
  const details = identity.certChain.leafDetails;
  return {
    info: {
      listeners: started.map(({ name, port }) => ({ name, port })),
      rootKey: Buffer.from(identity.root.publicKey).toString('hex'),
      staticKey: Buffer.from(identity.static.publicKey).toString('hex'),
      chain: {
        intermediateSerial: identity.certChain.intermediateDetails.serial!,
        leafSerial: details.serial!,
        validity: { notBefore: details.notBefore!, notAfter: details.notAfter! },
      },
      answerBytes: { serverHello: recorded.length, garbage: GARBAGE_FRAME.length, oversizedFirst: OVERSIZED_FIRST.length },
    },
    close: async () => {
      await Promise.all(started.map((s) => s.close()));
    },
  };
}

function readConfig(argv: string[]): { listeners: WhatsAppListener[] } {
  const i = argv.indexOf('--config');
  const raw = i >= 0 ? argv[i + 1] : undefined;
  if (raw === undefined) throw new Error('usage: whatsapp-server.ts --config JSON|@file');
  return JSON.parse(raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw) as { listeners: WhatsAppListener[] };
}

async function main(): Promise<void> {
  const server = await startWhatsAppServer(readConfig(process.argv.slice(2)), (e) => process.stdout.write(`EVENT ${JSON.stringify(e)}\n`));
  const shutdown = (): void => {
    void server.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.stdout.write(`READY ${JSON.stringify(server.info)}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`whatsapp-server: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  });
}
