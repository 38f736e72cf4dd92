/**
 * A lab Telegram DC: speaks just enough MTProto to answer `req_pq_multi` with a well-formed `resPQ`
 * (core.telegram.org/mtproto/auth_key), over every transport a client may pick (abridged,
 * intermediate, padded intermediate, full, obfuscated2 over TCP; obfuscated2 over WebSocket, plain
 * or over TLS). Built from callprobe's own codecs (src/protocol/), which are checked against the
 * samples-auth_key page and gramjs; the answer carries the page's pq and Telegram's three key
 * fingerprints, so a probe sees what a real DC would send.
 *
 * Each listener has a misbehaviour `mode` (so a test picks one by port):
 *   ok               resPQ echoing the client's nonce
 *   garbage          a well-framed payload that is not an MTProto message ("this is not an MTProto message!!")
 *   wrong_nonce      resPQ with the client's nonce inverted (every byte XOR 0xff)
 *   transport_error  the transport error `errorCode` (default -404) framed by the transport, then FIN;
 *                    on a WebSocket with `wsErrorAsClose`, a close 1000 with the decimal code as reason
 *   close            FIN (WebSocket: close 1000, no reason) as soon as the request arrived
 *   reset            RST as soon as the request arrived (TCP only)
 *   silent           reads the request and never answers
 *
 * Run in the lab's server namespace (test/lab/tools.ts startNodeServer):
 *   node --import tsx test/lab/servers/telegram-dc.ts --config '{"listeners":[...]}'   (or --config @file.json)
 * It prints `READY {"listeners":[{name,port}]}` once listening, then one `EVENT {...}` line per
 * accept / upgrade / request / answer / close. Tests on loopback import `startTelegramDc` instead
 * and get the same events through a callback.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, STATUS_CODES } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { ProbeFailure } from '../../../src/failure.js';
import { decodeReqPqMulti, encodeResPQ, serverResponseMessageId } from '../../../src/protocol/mtproto.js';
import {
  createFrameDecoder,
  createFrameEncoder,
  detectClientTransport,
  transportErrorPayload,
  type FrameDecoder,
  type FrameEncoder,
  type MtprotoTransport,
} from '../../../src/protocol/mtproto-transport.js';
import { OBFUSCATED2_HEADER_LENGTH, acceptObfuscated2Client } from '../../../src/protocol/obfuscated2.js';

export const DC_MODES = ['ok', 'garbage', 'wrong_nonce', 'transport_error', 'close', 'reset', 'silent'] as const;
export type DcMode = (typeof DC_MODES)[number];

/** pq as in the samples-auth_key page's "2. response resPQ" (snapshot A of test/protocol/mtproto.test.ts). */
export const LAB_PQ = Buffer.from('1be363a46f8edfc1', 'hex');
/** Telegram's public key fingerprints, in the order the samples-auth_key page's resPQ lists them (TL longs). */
export const LAB_FINGERPRINTS: readonly bigint[] = [0x0bc35f3509f7b7a5n, 0xc3b42b026ce86b21n, 0xd09d1d85de64fd85n];
/** 32 bytes (whole words, so the abridged transport can frame it) whose first 8 are not a zero auth_key_id. */
export const GARBAGE_PAYLOAD = Buffer.from('this is not an MTProto message!!', 'latin1');

/** The lab DC's resPQ: the codec's encoder with the page's pq and fingerprints. */
export function buildResPQ(fields: { nonce: Uint8Array; serverNonce: Uint8Array; messageId: bigint }): Uint8Array {
  return encodeResPQ({ ...fields, pq: LAB_PQ, fingerprints: LAB_FINGERPRINTS });
}

const common = {
  name: z.string().optional(),
  host: z.string().default('0.0.0.0'),
  port: z.number().int().min(0).max(65535),
  mode: z.enum(DC_MODES).default('ok'),
  errorCode: z.number().int().max(-1).default(-404),
};
const ListenerSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('tcp'), ...common }),
  z.strictObject({
    kind: z.literal('ws'),
    ...common,
    tls: z.strictObject({ cert: z.string(), key: z.string() }).optional(),
    /** The one path that upgrades (Telegram: /apiws); others get 404. */
    path: z.string().default('/apiws'),
    /** Paths whose upgrade is refused with this HTTP status. */
    refuse: z.record(z.string(), z.number().int().min(200).max(599)).default({}),
    wsErrorAsClose: z.boolean().default(false),
  }),
]);
export type DcListener = z.input<typeof ListenerSchema>;
const ConfigSchema = z.strictObject({ listeners: z.array(ListenerSchema).min(1) });
export type DcConfig = z.input<typeof ConfigSchema>;

export type DcEvent = { event: string; listener: string; peer: string; [key: string]: unknown };
export interface RunningDc {
  listeners: Array<{ name: string; port: number }>;
  close(): Promise<void>;
}

/** How one connection talks back: a TCP socket or a WebSocket. */
interface Wire {
  send(bytes: Uint8Array): void;
  /** Orderly close: FIN, or WebSocket close 1000 with an optional reason. */
  end(reason?: string): void;
  reset(): void;
}

type Listener = z.output<typeof ListenerSchema>;

/**
 * One client connection: detects its transport from the first bytes as a DC does
 * (src/protocol/mtproto-transport.ts detectClientTransport), reads one req_pq_multi, answers per mode.
 */
function session(l: Listener, name: string, peer: string, wire: Wire, emit: (e: DcEvent) => void, overWebSocket: boolean) {
  let pending = Buffer.alloc(0);
  let bytesIn = 0;
  let bytesOut = 0;
  let answered = false;
  let link: { decoder: FrameDecoder; encoder: FrameEncoder; decrypt(b: Uint8Array): Uint8Array; encrypt(b: Uint8Array): Uint8Array } | null = null;
  let described: Record<string, unknown> = {};

  const send = (bytes: Uint8Array): void => {
    bytesOut += bytes.length;
    wire.send(bytes);
  };
  const frame = (payload: Uint8Array): void => send(link!.encrypt(link!.encoder.encode(payload)));

  const start = (): boolean => {
    const guess = detectClientTransport(pending);
    if (guess === 'need_more') return false;
    if (guess === 'http' || guess === 'tls') throw new Error(`client spoke ${guess}, not MTProto`);
    if (guess === 'obfuscated2') {
      if (pending.length < OBFUSCATED2_HEADER_LENGTH) return false;
      const server = acceptObfuscated2Client(pending.subarray(0, OBFUSCATED2_HEADER_LENGTH));
      link = {
        decoder: createFrameDecoder(server.transport),
        encoder: createFrameEncoder(server.transport, { sendTag: false }),
        decrypt: (b) => server.decrypt(b),
        encrypt: (b) => server.encrypt(b),
      };
      described = { transport: 'obfuscated2', inner: server.transport, dcId: server.dcId };
      pending = pending.subarray(OBFUSCATED2_HEADER_LENGTH);
      return true;
    }
    // Telegram's WebSocket endpoints require obfuscation (core.telegram.org/mtproto/transports, "WebSocket").
    if (overWebSocket) throw new Error(`unobfuscated ${guess} over a WebSocket`);
    const transport: MtprotoTransport = guess;
    link = {
      decoder: createFrameDecoder(transport, { expectTag: true }),
      encoder: createFrameEncoder(transport, { sendTag: false }),
      decrypt: (b) => b,
      encrypt: (b) => b,
    };
    described = { transport };
    return true;
  };

  const answer = (payload: Uint8Array): void => {
    const req = decodeReqPqMulti(payload);
    const nonceHex = Buffer.from(req.nonce).toString('hex');
    emit({ event: 'request', listener: name, peer, ...described, nonceHex, bytesIn });
    answered = true;
    const serverNonce = randomBytes(16);
    switch (l.mode) {
      case 'ok':
        frame(buildResPQ({ nonce: req.nonce, serverNonce, messageId: serverResponseMessageId(Date.now()) }));
        break;
      case 'wrong_nonce':
        frame(buildResPQ({ nonce: req.nonce.map((b) => b ^ 0xff), serverNonce, messageId: serverResponseMessageId(Date.now()) }));
        break;
      case 'garbage':
        frame(GARBAGE_PAYLOAD);
        break;
      case 'transport_error':
        if (overWebSocket && l.kind === 'ws' && l.wsErrorAsClose) wire.end(String(l.errorCode));
        else {
          frame(transportErrorPayload(l.errorCode));
          wire.end();
        }
        break;
      case 'close':
        wire.end();
        break;
      case 'reset':
        wire.reset();
        break;
      case 'silent':
        break;
    }
    emit({ event: 'answer', listener: name, peer, mode: l.mode, bytesOut, ...(l.mode === 'ok' ? { serverNonceHex: serverNonce.toString('hex') } : {}) });
  };

  return {
    push(chunk: Buffer): void {
      bytesIn += chunk.length;
      if (answered) return;
      try {
        if (!link) {
          pending = Buffer.concat([pending, chunk]);
          if (!start()) return;
          chunk = pending;
          pending = Buffer.alloc(0);
        }
        for (const f of link!.decoder.push(link!.decrypt(chunk))) {
          if (f.kind === 'message' && !answered) answer(f.payload);
        }
      } catch (err) {
        answered = true;
        const error = err instanceof ProbeFailure ? `${err.code}: ${err.message}` : (err as Error).message;
        emit({ event: 'bad-request', listener: name, peer, error, bytesIn });
        wire.end();
      }
    },
    closed(): void {
      emit({ event: 'close', listener: name, peer, bytesIn, bytesOut });
    },
  };
}

function listen(server: NetServer | HttpServer, l: Listener): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(l.port, l.host, () => resolve((server.address() as AddressInfo).port));
  });
}

async function startListener(l: Listener, emit: (e: DcEvent) => void): Promise<{ name: string; port: number; close(): Promise<void> }> {
  const name = l.name ?? `${l.kind}:${l.port}`;
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  let server: NetServer | HttpServer;
  let closeExtra = (): void => {};
  if (l.kind === 'tcp') {
    server = createTcpServer((socket) => {
      track(socket);
      const peer = `${socket.remoteAddress}:${socket.remotePort}`;
      emit({ event: 'accept', listener: name, peer });
      const s = session(l, name, peer, { send: (b) => socket.write(b), end: () => socket.end(), reset: () => socket.resetAndDestroy() }, emit, false);
      socket.on('data', (d: Buffer) => s.push(d));
      socket.on('error', () => {});
      socket.on('close', () => s.closed());
    });
  } else {
    const http = l.tls ? createHttpsServer({ cert: readFileSync(l.tls.cert), key: readFileSync(l.tls.key) }) : createHttpServer();
    server = http;
    http.on('connection', track);
    http.on('request', (_req, res) => res.writeHead(404).end());
    // Telegram's endpoints speak the "binary" subprotocol (core.telegram.org/mtproto/transports, "WebSocket").
    const wss = new WebSocketServer({ noServer: true, handleProtocols: (offered) => (offered.has('binary') ? 'binary' : false) });
    closeExtra = () => {
      for (const c of wss.clients) c.terminate();
    };
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = (req.url ?? '/').split('?')[0]!;
      const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
      const status = l.refuse[path] ?? (path === l.path ? undefined : 404);
      if (status !== undefined) {
        emit({ event: 'upgrade', listener: name, peer, path, status });
        socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Refused'}\r\nServer: lab-dc\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
        emit({ event: 'upgrade', listener: name, peer, path, status: 101, subprotocol: ws.protocol || null });
        const wire: Wire = {
          send: (b) => ws.send(b, { binary: true }),
          end: (reason) => ws.close(1000, reason ?? ''),
          reset: () => ws.terminate(),
        };
        const s = session(l, name, peer, wire, emit, true);
        ws.on('message', (data: Buffer) => s.push(Buffer.isBuffer(data) ? data : Buffer.from(data)));
        ws.on('error', () => {});
        ws.on('close', () => s.closed());
      });
    });
  }
  const port = await listen(server, l);
  return {
    name,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        closeExtra();
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Starts every listener of `config`; events go to `emit`. */
export async function startTelegramDc(config: DcConfig, emit: (e: DcEvent) => void): Promise<RunningDc> {
  const parsed = ConfigSchema.parse(config);
  const started = await Promise.all(parsed.listeners.map((l) => startListener(l, emit)));
  return {
    listeners: started.map(({ name, port }) => ({ name, port })),
    close: async () => {
      await Promise.all(started.map((s) => s.close()));
    },
  };
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--config');
  const raw = i >= 0 ? process.argv[i + 1] : undefined;
  if (raw === undefined) throw new Error('usage: telegram-dc.ts --config JSON|@file');
  const config = JSON.parse(raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw) as DcConfig;
  const dc = await startTelegramDc(config, (e) => process.stdout.write(`EVENT ${JSON.stringify(e)}\n`));
  const shutdown = (): void => {
    void dc.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.stdout.write(`READY ${JSON.stringify({ listeners: dc.listeners })}\n`);
}

// Run as a script (the lab), not when imported (loopback tests).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`telegram-dc: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  });
}
