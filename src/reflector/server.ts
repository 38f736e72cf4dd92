import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, isIPv6, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { parseHostPort } from '../net/address.js';
import type { Logger } from '../log.js';
import type { ReflectorConfig } from './config.js';
import { serveConnection } from './connection.js';
import { datagramHandler } from './datagram.js';
import { FlowTable } from './flows.js';
import { parseMediaKey } from '../config/media-key.js';
import { ConnectionLimits, SourceTable, sourceKey } from './limits.js';
import { ReflectorMetrics, metricsServer } from './metrics.js';

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

/**
 * The media reflector (docs/protocols.md#reflector-wire-format, issue 7 part 1): researchers run it outside the censored
 * network. Everything it sends is an answer to a packet authenticated with the shared key, so it
 * is neither an open relay nor an amplifier:
 * - UDP (datagram.ts): an authentic media packet is echoed byte for byte to its source, so a
 *   reply is never larger than its request; anything else is dropped silently.
 * - TCP/TLS (connection.ts): RFC 4571 frames; an authentic media packet is echoed as the same
 *   frame, and an authentic stream request is answered with the proof and N bytes (a download),
 *   acknowledgements of the N bytes the prober sends (an upload: never more bytes than arrived),
 *   or both, or with an authenticated refusal (protocol/reflector.ts). TCP's handshake means the
 *   requester is the receiver, so N bytes to it amplify nothing.
 * - Limits (limits.ts): per-source state exists only for sources that sent something authentic;
 *   unknown sources share one bucket that bounds the HMAC work a flood can cause, known ones pay
 *   from their own buckets before their tags are checked; the table forgets its least recently
 *   used source when full. Connections are counted per source and in all from the raw TCP
 *   connection, so TLS handshakes are bounded too, and a handshake must finish within
 *   `handshakeTimeout`.
 * - No event handler lets an exception escape (a throw in one would end the process): each is
 *   wrapped, and what it throws is counted (callprobe_reflector_handler_errors_total) and logged.
 */
export async function startReflector(config: ReflectorConfig, log: Logger): Promise<Reflector> {
  const key = parseMediaKey(config.key);
  const limits = config.limits;
  const metrics = new ReflectorMetrics();
  const contain = containErrors(metrics, log);
  const table = new SourceTable({ ...limits, idleMs: limits.idleTimeout }, () => metrics.sourceEvictions.inc());
  // A flow is remembered for its report a while after its stream ended: the prober asks after a drain of at most seconds.
  const flows = new FlowTable({ maxFlows: limits.maxFlows, idleMs: Math.max(limits.idleTimeout, 60_000) });
  const connectionLimits = new ConnectionLimits(limits.maxConnections, limits.maxConnectionsPerSource);
  const udpSockets: UdpSocket[] = [];
  const servers: Server[] = [];
  const open = new Set<Socket>();
  let httpServer: HttpServer | null = null;
  const connectionContext = { key, table, metrics, contain, streamMaxBytes: limits.streamMaxBytes, idleMs: limits.idleTimeout };

  /** Counts a raw TCP connection against the limits (before any TLS); false if it was refused. */
  const admitConnection = (raw: Socket): boolean => {
    const release = connectionLimits.acquire(sourceKey(raw.remoteAddress ?? ''));
    if (!release) {
      metrics.refusedConnections.inc();
      raw.destroy();
      return false;
    }
    open.add(raw);
    raw.once('close', () => {
      release();
      open.delete(raw);
    });
    return true;
  };

  /** Listener hygiene shared by the TCP and TLS servers. */
  const guardServer = (server: Server): void => {
    // A backstop per listener; the reflector-wide count is ConnectionLimits.
    server.maxConnections = limits.maxConnections;
    server.on('drop', contain(() => metrics.refusedConnections.inc()));
    server.on('error', contain((err: Error) => log.warn({ err: err.message }, 'reflector listener error')));
  };

  try {
    for (const text of config.listen.udp) {
      const { host, port } = parseHostPort(text, 0)!;
      const sock = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
      sock.on('message', contain(datagramHandler(sock, { key, table, flows, metrics })));
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
      const server = createTcpServer(
        contain((s: Socket) => {
          if (admitConnection(s)) serveConnection(s, 'tcp', sourceKey(s.remoteAddress ?? ''), connectionContext);
        }),
      );
      guardServer(server);
      await listen(server, text);
      tcp.push(server);
    }
    const tls: Server[] = [];
    for (const t of config.listen.tls) {
      const server = createTlsServer(
        { cert: readFileSync(t.cert), key: readFileSync(t.key), handshakeTimeout: limits.handshakeTimeout },
        contain((s: TLSSocket) => {
          if (!s.destroyed) serveConnection(s, 'tls', sourceKey(s.remoteAddress ?? ''), connectionContext);
        }),
      );
      // Before node:tls wraps the raw socket and starts the handshake: a refused connection
      // costs no handshake. (Node then wraps a destroyed socket, which ends in tlsClientError.)
      server.prependListener('connection', contain(admitConnection));
      // Node leaves the socket open after a tlsClientError that has a listener: close it.
      server.on(
        'tlsClientError',
        contain((err: NodeJS.ErrnoException, s: TLSSocket) => {
          if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') metrics.closedConnections.labels('handshake_timeout').inc();
          s.destroy();
        }),
      );
      guardServer(server);
      await listen(server, t.listen);
      tls.push(server);
    }
    let metricsAddress: BoundAddress | null = null;
    if (config.metrics.listen !== '') {
      const { host, port } = parseHostPort(config.metrics.listen, 0)!;
      httpServer = metricsServer(metrics.registry);
      httpServer.listen(port, host);
      await once(httpServer, 'listening');
      httpServer.on('error', (err) => log.warn({ err: err.message }, 'reflector metrics listener error'));
      metricsAddress = bound(httpServer.address() as AddressInfo);
    }
    const sweeper = setInterval(
      contain(() => {
        table.expire(performance.now());
        flows.expire(performance.now());
        metrics.sources.set(table.size);
      }),
      Math.max(1000, Math.min(limits.idleTimeout / 2, 30_000)),
    );
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

/** Logging a handler's exception at most this often: a bug hit by every packet must not flood the log. */
const HANDLER_ERROR_LOG_INTERVAL_MS = 60_000;

/**
 * Wraps event handlers so that an exception is counted and logged instead of escaping (from an
 * EventEmitter listener it would be an uncaught exception, the end of the process).
 */
export function containErrors(metrics: ReflectorMetrics, log: Logger): <A extends unknown[]>(handler: (...args: A) => void) => (...args: A) => void {
  let lastLogged = Number.NEGATIVE_INFINITY;
  return (handler) =>
    (...args) => {
      try {
        handler(...args);
      } catch (err) {
        metrics.handlerErrors.inc();
        const now = performance.now();
        if (now - lastLogged >= HANDLER_ERROR_LOG_INTERVAL_MS) {
          lastLogged = now;
          log.error({ err }, 'reflector event handler failed (a bug); what it was handling was dropped');
        }
      }
    };
}

function bound(a: AddressInfo): BoundAddress {
  return { address: a.address, port: a.port };
}
