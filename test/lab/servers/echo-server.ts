/**
 * A small configurable lab server: TCP, UDP, TLS and WebSocket (ws:// and wss://) listeners that
 * echo what they receive. Run in the server namespace:
 *
 *   node --import tsx test/lab/servers/echo-server.ts --config '{"listeners":[...]}'
 *
 * (`--config @path.json` reads a file.) Prints one `READY {...}` line once every listener is up,
 * then an `EVENT {...}` JSON line per accept / handshake / upgrade / close, so a test can assert
 * what reached the server. SIGTERM closes everything and exits 0.
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, STATUS_CODES } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';
import { z } from 'zod';

const base = {
  name: z.string().optional(),
  host: z.string().default('0.0.0.0'),
  port: z.number().int().min(0).max(65535),
};
/** What a stream listener sends first, as UTF-8 text or hex. */
const greeting = {
  greeting: z.string().optional(),
  greetingHex: z.string().regex(/^([0-9a-fA-F]{2})*$/).optional(),
  /** Echo received bytes back (default true). */
  echo: z.boolean().default(true),
};
const tlsFiles = { cert: z.string(), key: z.string() };

const Listener = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('tcp'), ...base, ...greeting }),
  z.strictObject({ kind: z.literal('udp'), ...base }),
  z.strictObject({ kind: z.literal('tls'), ...base, ...greeting, ...tlsFiles, alpn: z.array(z.string()).optional() }),
  z.strictObject({
    kind: z.literal('ws'),
    ...base,
    tls: z.strictObject(tlsFiles).optional(),
    /** Paths whose upgrade is answered with this HTTP status instead of 101. */
    refuse: z.record(z.string(), z.number().int().min(200).max(599)).default({ '/refuse': 403 }),
  }),
]);
type Listener = z.infer<typeof Listener>;
const Config = z.strictObject({ listeners: z.array(Listener).min(1) });

function event(fields: Record<string, unknown>): void {
  process.stdout.write(`EVENT ${JSON.stringify(fields)}\n`);
}

function peerOf(s: Socket): string {
  return `${s.remoteAddress}:${s.remotePort}`;
}

function greetingBytes(l: { greeting?: string | undefined; greetingHex?: string | undefined }): Buffer | null {
  if (l.greetingHex !== undefined) return Buffer.from(l.greetingHex, 'hex');
  if (l.greeting !== undefined) return Buffer.from(l.greeting, 'utf8');
  return null;
}

/** Greeting, echo, and a close event with byte counts: shared by TCP and TLS. */
function serveStream(name: string, socket: Socket, l: { greeting?: string; greetingHex?: string; echo: boolean }, extra: Record<string, unknown> = {}) {
  const peer = peerOf(socket);
  let bytesIn = 0;
  const hello = greetingBytes(l);
  if (hello) socket.write(hello);
  socket.on('data', (chunk: Buffer) => {
    bytesIn += chunk.length;
    if (l.echo) socket.write(chunk);
  });
  socket.on('end', () => socket.end());
  socket.on('error', (err: NodeJS.ErrnoException) => event({ event: 'error', listener: name, peer, code: err.code ?? err.message }));
  socket.on('close', () => event({ event: 'close', listener: name, peer, bytesIn, ...extra }));
}

function listen(server: NetServer | HttpServer, l: Listener): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(l.port, l.host, () => resolve((server.address() as AddressInfo).port));
  });
}

type Closer = () => void;

async function start(l: Listener): Promise<{ name: string; port: number; close: Closer }> {
  const name = l.name ?? `${l.kind}:${l.host}:${l.port}`;
  switch (l.kind) {
    case 'tcp': {
      const server = createTcpServer((socket) => {
        event({ event: 'accept', listener: name, peer: peerOf(socket) });
        serveStream(name, socket, l);
      });
      return { name, port: await listen(server, l), close: () => server.close() };
    }
    case 'udp': {
      const sock = createSocket('udp4');
      sock.on('message', (msg, rinfo) => {
        event({ event: 'datagram', listener: name, peer: `${rinfo.address}:${rinfo.port}`, bytes: msg.length });
        sock.send(msg, rinfo.port, rinfo.address);
      });
      const port = await new Promise<number>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind(l.port, l.host, () => resolve(sock.address().port));
      });
      return { name, port, close: () => sock.close() };
    }
    case 'tls': {
      const server = createTlsServer({
        cert: readFileSync(l.cert),
        key: readFileSync(l.key),
        ...(l.alpn ? { ALPNProtocols: l.alpn } : {}),
      });
      server.on('secureConnection', (socket: TLSSocket) => {
        const extra = { sni: socket.servername || null, alpn: socket.alpnProtocol || null, protocol: socket.getProtocol() };
        event({ event: 'handshake', listener: name, peer: peerOf(socket), ...extra });
        serveStream(name, socket, l, extra);
      });
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) =>
        event({ event: 'tls-error', listener: name, peer: peerOf(socket), code: err.code ?? err.message }),
      );
      return { name, port: await listen(server, l), close: () => server.close() };
    }
    case 'ws': {
      const http = l.tls
        ? createHttpsServer({ cert: readFileSync(l.tls.cert), key: readFileSync(l.tls.key) })
        : createHttpServer();
      http.on('request', (_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket only\n');
      });
      const wss = new WebSocketServer({ noServer: true });
      http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        const path = (req.url ?? '/').split('?')[0]!;
        const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
        const status = l.refuse[path];
        if (status !== undefined) {
          event({ event: 'upgrade', listener: name, peer, path, status });
          const reason = STATUS_CODES[status] ?? 'Refused';
          socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
          return;
        }
        wss.handleUpgrade(req, socket, head, (ws) => {
          event({ event: 'upgrade', listener: name, peer, path, status: 101 });
          let messages = 0;
          ws.on('message', (data, isBinary) => {
            messages++;
            ws.send(data, { binary: isBinary });
          });
          ws.on('close', (code) => event({ event: 'close', listener: name, peer, messages, code }));
        });
      });
      return {
        name,
        port: await listen(http, l),
        close: () => {
          for (const c of wss.clients) c.terminate();
          http.close();
        },
      };
    }
  }
}

function readConfig(argv: string[]): z.infer<typeof Config> {
  const i = argv.indexOf('--config');
  const raw = i >= 0 ? argv[i + 1] : undefined;
  if (raw === undefined) throw new Error('usage: echo-server.ts --config JSON|@file');
  const text = raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw;
  return Config.parse(JSON.parse(text));
}

async function main(): Promise<void> {
  const config = readConfig(process.argv.slice(2));
  const started = await Promise.all(config.listeners.map(start));
  const shutdown = () => {
    for (const s of started) s.close();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.stdout.write(`READY ${JSON.stringify({ listeners: started.map(({ name, port }) => ({ name, port })) })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`echo-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
});
