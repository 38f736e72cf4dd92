import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createTcpServer, isIPv6, type AddressInfo, type Server, type Socket } from 'node:net';
import { randomFillSync } from 'node:crypto';
import { createServer as createTlsServer } from 'node:tls';
import type { Server as HttpServer } from 'node:http';
import type { Logger } from '../log.js';
import { parseHostPort } from '../config/units.js';
import { verifyTag } from '../protocol/media-packet.js';
import type { ReflectorConfig } from './config.js';
import { parseMediaKey } from './key.js';
import { SourceTable } from './limits.js';
import { ReflectorMetrics, metricsServer, type ReflectorTransport } from './metrics.js';
import { FrameReader, encodeFrame, verifyStreamRequest } from './protocol.js';

export interface BoundAddress {
  readonly address: string;
  readonly port: number;
}

export interface Reflector {
  /** Where each listener is bound (the real port when the config said 0). */
  readonly udp: readonly BoundAddress[];
  readonly tcp: readonly BoundAddress[];
  readonly tls: readonly BoundAddress[];
  readonly metricsAddress: BoundAddress | null;
  readonly metrics: ReflectorMetrics;
  close(): Promise<void>;
}

/** Stream-test data goes out in chunks of this size, each written once the socket drained. */
const STREAM_CHUNK = 16 * 1024;

/**
 * The media reflector (design.md §8, issue 7 part 1): researchers run it outside the censored
 * network. Everything it sends is an answer to a packet authenticated with the shared key, so it
 * is neither an open relay nor an amplifier:
 * - UDP: an authentic media packet is echoed byte for byte to its source, so a reply is never
 *   larger than its request; anything else is dropped silently.
 * - TCP/TLS: RFC 4571 frames; an authentic media packet is echoed as the same frame, and an
 *   authentic stream request is answered with the proof and N bytes (protocol.ts). TCP's
 *   handshake means the requester is the receiver, so N bytes to it amplify nothing.
 * - Per source address, token buckets (packets and bytes; stream requests per minute) are
 *   checked before the HMAC, so a flood costs the reflector no more than the limit's worth of
 *   hashing; sources and connections idle for `idleTimeout` are forgotten or closed.
 */
export async function startReflector(config: ReflectorConfig, log: Logger): Promise<Reflector> {
  const key = parseMediaKey(config.key);
  const limits = config.limits;
  const metrics = new ReflectorMetrics();
  const table = new SourceTable({ ...limits, idleMs: limits.idleTimeout });
  const udpSockets: UdpSocket[] = [];
  const servers: Server[] = [];
  const open = new Set<Socket>();
  let httpServer: HttpServer | null = null;

  const onDatagram = (sock: UdpSocket) => (msg: Buffer, rinfo: { address: string; port: number }) => {
    metrics.bytes.labels('udp', 'in').inc(msg.length);
    const admission = table.admitPacket(rinfo.address, msg.length, performance.now());
    metrics.sources.set(table.size);
    if (admission !== 'ok') return void metrics.packets.labels('udp', admission).inc();
    if (verifyTag(msg, key) === null) return void metrics.packets.labels('udp', 'bad_tag').inc();
    metrics.packets.labels('udp', 'echoed').inc();
    metrics.bytes.labels('udp', 'out').inc(msg.length);
    sock.send(msg, rinfo.port, rinfo.address);
  };

  const serveConnection = (socket: Socket, transport: ReflectorTransport, source: string): void => {
    const state = table.get(source, performance.now());
    if (!state || open.size >= limits.maxConnections || state.connections >= limits.maxConnectionsPerSource) {
      metrics.refusedConnections.inc();
      socket.destroy();
      return;
    }
    state.connections++;
    open.add(socket);
    metrics.connections.labels(transport).inc();
    socket.setNoDelay(true);
    // Counts reads and writes as activity: a stream still being sent is not idle.
    socket.setTimeout(limits.idleTimeout, () => socket.destroy());
    socket.on('error', () => {});
    socket.on('close', () => {
      state.connections--;
      state.lastSeenMs = performance.now();
      open.delete(socket);
      metrics.connections.labels(transport).dec();
    });
    const reader = new FrameReader();
    let streaming = false;
    socket.on('data', (chunk: Buffer) => {
      metrics.bytes.labels(transport, 'in').inc(chunk.length);
      // After a stream request the connection only carries the reply: later input is ignored.
      if (streaming) return;
      for (const frame of reader.push(chunk)) {
        const now = performance.now();
        const admission = table.admitPacket(source, frame.length, now);
        if (admission !== 'ok') {
          metrics.packets.labels(transport, admission).inc();
          continue;
        }
        const request = verifyStreamRequest(frame, key);
        if (request) {
          streaming = true;
          if (request.bytesRequested > limits.streamMaxBytes) {
            metrics.streams.labels(transport, 'too_large').inc();
            socket.end();
          } else if (!state.streams.take(1, now)) {
            metrics.streams.labels(transport, 'rate_limited').inc();
            socket.end();
          } else {
            metrics.streams.labels(transport, 'served').inc();
            sendStream(socket, transport, request.proof, request.bytesRequested);
          }
          return;
        }
        if (verifyTag(frame, key) === null) {
          metrics.packets.labels(transport, 'bad_tag').inc();
          continue;
        }
        metrics.packets.labels(transport, 'echoed').inc();
        metrics.bytes.labels(transport, 'out').inc(frame.length + 2);
        socket.write(encodeFrame(frame));
      }
    });
  };

  const sendStream = (socket: Socket, transport: ReflectorTransport, proof: Buffer, total: number): void => {
    socket.write(proof);
    metrics.bytes.labels(transport, 'out').inc(proof.length);
    let left = total;
    const pump = (): void => {
      while (left > 0 && !socket.destroyed) {
        const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(STREAM_CHUNK, left)));
        left -= chunk.length;
        metrics.bytes.labels(transport, 'out').inc(chunk.length);
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    pump();
  };

  try {
    for (const text of config.listen.udp) {
      const { host, port } = parseHostPort(text, 0)!;
      const sock = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
      sock.on('message', onDatagram(sock));
      sock.on('error', (err) => log.warn({ err: err.message }, 'udp socket error'));
      sock.bind(port, host);
      await once(sock, 'listening');
      udpSockets.push(sock);
    }
    const listen = async (server: Server, text: string): Promise<void> => {
      const { host, port } = parseHostPort(text, 0)!;
      server.listen(port, host);
      await once(server, 'listening');
      servers.push(server);
    };
    const tcp: Server[] = [];
    for (const text of config.listen.tcp) {
      const server = createTcpServer((s) => serveConnection(s, 'tcp', s.remoteAddress ?? ''));
      await listen(server, text);
      tcp.push(server);
    }
    const tls: Server[] = [];
    for (const t of config.listen.tls) {
      const server = createTlsServer({ cert: readFileSync(t.cert), key: readFileSync(t.key) }, (s) => serveConnection(s, 'tls', s.remoteAddress ?? ''));
      server.on('tlsClientError', () => {});
      await listen(server, t.listen);
      tls.push(server);
    }
    let metricsAddress: BoundAddress | null = null;
    if (config.metrics.listen !== '') {
      const { host, port } = parseHostPort(config.metrics.listen, 0)!;
      httpServer = metricsServer(metrics.registry);
      httpServer.listen(port, host);
      await once(httpServer, 'listening');
      metricsAddress = bound(httpServer.address() as AddressInfo);
    }
    const sweeper = setInterval(() => {
      table.expire(performance.now());
      metrics.sources.set(table.size);
    }, Math.max(1000, Math.min(limits.idleTimeout / 2, 30_000)));
    sweeper.unref();

    const reflector: Reflector = {
      udp: udpSockets.map((s) => bound(s.address())),
      tcp: tcp.map((s) => bound(s.address() as AddressInfo)),
      tls: tls.map((s) => bound(s.address() as AddressInfo)),
      metricsAddress,
      metrics,
      close: async () => {
        clearInterval(sweeper);
        for (const s of open) s.destroy();
        await Promise.all([
          ...udpSockets.map((s) => new Promise<void>((r) => s.close(() => r()))),
          ...servers.map((s) => new Promise<void>((r) => s.close(() => r()))),
          ...(httpServer ? [new Promise<void>((r) => httpServer!.close(() => r()))] : []),
        ]);
      },
    };
    return reflector;
  } catch (err) {
    for (const s of udpSockets) s.close();
    for (const s of servers) s.close();
    httpServer?.close();
    throw err;
  }
}

function bound(a: AddressInfo): BoundAddress {
  return { address: a.address, port: a.port };
}
