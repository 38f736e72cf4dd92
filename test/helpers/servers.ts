import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import * as dnsPacket from 'dns-packet';
import { WebSocketServer } from 'ws';

/** In-process loopback servers for unit tests; the lab has the same behaviours in namespaces. */

export interface Running {
  port: number;
  close(): Promise<void>;
}

/** Listens on a free loopback port; close() also destroys the connections still open. */
export function listenTracked(server: Server): Promise<Running> {
  return listen(server, track(server));
}

function track(server: Server): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return sockets;
}

async function listen(server: Server, sockets: Set<Socket>): Promise<Running> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * What a TCP server does once the client's first bytes arrive. `data-rst` answers 1000 bytes and
 * resets right behind them, as a censor's RST in place of the next segment arrives: on Linux the
 * client's Node then reports an end of stream, not ECONNRESET (src/net/stream-end.ts).
 */
export type OnData = 'echo' | 'rst' | 'fin' | 'silent' | 'data-rst';

/** The bytes a `data-rst` server sends before its RST. */
export const DATA_BEFORE_RST = 1000;

export async function tcpServer(onData: OnData = 'echo'): Promise<Running & { received: Buffer[] }> {
  const received: Buffer[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', (d) => {
      received.push(d);
      if (onData === 'echo') socket.write(d);
      else if (onData === 'rst') socket.resetAndDestroy();
      else if (onData === 'fin') socket.end();
      else if (onData === 'data-rst') socket.write(Buffer.alloc(DATA_BEFORE_RST, 0x42), () => socket.resetAndDestroy());
    });
  });
  return { ...(await listen(server, track(server))), received };
}

/** A port with nothing listening: connecting to it gets an RST. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function tlsServer(opts: { cert: string; key: string; alpn?: string[] }): Promise<Running> {
  const server = createTlsServer({ cert: opts.cert, key: opts.key, ALPNProtocols: opts.alpn }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  server.on('tlsClientError', () => {});
  return listen(server, track(server));
}

/** WebSocket echo over HTTP or HTTPS; a request for /refuse gets the given HTTP status instead. */
export async function wsServer(opts: { tls?: { cert: string; key: string }; refuseStatus?: number } = {}): Promise<Running> {
  const http = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }) : createHttpServer();
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => protocols.values().next().value ?? false });
  http.on('upgrade', (req, socket, head) => {
    if (req.url === '/refuse') {
      socket.end(`HTTP/1.1 ${opts.refuseStatus ?? 403} Forbidden\r\nServer: lab\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m) => ws.send(m)));
  });
  const sockets = track(http as unknown as Server);
  const running = await listen(http as unknown as Server, sockets);
  return {
    port: running.port,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await running.close();
    },
  };
}

export interface DnsRecord {
  rcode?: 'NOERROR' | 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED';
  A?: string[];
  AAAA?: string[];
  /** Never answered (a blackholed resolver). */
  drop?: boolean;
}

/** A UDP DNS server on loopback answering from a table; unknown names get NXDOMAIN. */
export async function dnsServer(records: Record<string, DnsRecord>): Promise<Running & { queries: string[] }> {
  const socket = createSocket('udp4');
  const queries: string[] = [];
  socket.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    const question = q.questions?.[0];
    if (!question) return;
    queries.push(`${question.type} ${question.name}`);
    const rec = records[question.name] ?? { rcode: 'NXDOMAIN' as const };
    if (rec.drop) return;
    const data = question.type === 'A' ? (rec.A ?? []) : question.type === 'AAAA' ? (rec.AAAA ?? []) : [];
    const rcode = rec.rcode ?? 'NOERROR';
    const response = dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | RCODES[rcode],
      questions: q.questions,
      answers: data.map((d) => ({ type: question.type as 'A', name: question.name, ttl: 60, class: 'IN' as const, data: d })),
    });
    socket.send(response, rinfo.port, rinfo.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return {
    port: socket.address().port,
    queries,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** RFC 1035 §4.1.1 rcode values, in the low bits of the flags word. */
const RCODES = { NOERROR: 0, NXDOMAIN: 3, SERVFAIL: 2, REFUSED: 5 } as const;
