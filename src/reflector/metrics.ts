import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from '../version.js';

/**
 * What happened to a packet or frame the reflector received (limits.ts `Admission`, plus):
 * `bad_source` is a UDP datagram from source port 0, which no reply can reach; `report` a UDP
 * report request answered (src/protocol/media-report.ts).
 */
export const PACKET_RESULTS = ['echoed', 'report', 'bad_tag', 'rate_limited', 'unauthenticated_limited', 'bad_source'] as const;
export type PacketResult = (typeof PACKET_RESULTS)[number];
/**
 * Why the reflector closed a connection itself: `idle` (idleTimeout), `backlog` (the peer does
 * not read its echoes: more than MAX_BACKLOG_BYTES waiting), `oversized_frame` (a length header
 * above the largest media packet), `handshake_timeout` (TLS handshake not done in time).
 */
export const CLOSE_REASONS = ['idle', 'backlog', 'oversized_frame', 'handshake_timeout'] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];
export const STREAM_RESULTS = ['served', 'rate_limited', 'too_large'] as const;
export type StreamResult = (typeof STREAM_RESULTS)[number];
export const TRANSPORTS = ['udp', 'tcp', 'tls'] as const;
export type ReflectorTransport = (typeof TRANSPORTS)[number];

/**
 * The reflector's Prometheus metrics (docs/architecture.md#metrics conventions: `callprobe_` prefix, base units,
 * counters ending in `_total`, series created at zero, no per-source labels: sources are raw IPs).
 */
export class ReflectorMetrics {
  readonly registry = new Registry();
  readonly packets = new Counter({
    name: 'callprobe_reflector_packets_total',
    help: 'Media packets received, by transport and by what the reflector did with them.',
    labelNames: ['transport', 'result'] as const,
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'callprobe_reflector_bytes_total',
    help: 'Payload bytes received and sent (echoes and stream-test data), by transport.',
    labelNames: ['transport', 'direction'] as const,
    registers: [this.registry],
  });
  readonly streams = new Counter({
    name: 'callprobe_reflector_stream_requests_total',
    help: 'Authentic stream-test requests, by outcome.',
    labelNames: ['transport', 'result'] as const,
    registers: [this.registry],
  });
  readonly connections = new Gauge({
    name: 'callprobe_reflector_connections',
    help: 'Open TCP and TLS connections.',
    labelNames: ['transport'] as const,
    registers: [this.registry],
  });
  readonly refusedConnections = new Counter({
    name: 'callprobe_reflector_refused_connections_total',
    help: 'TCP connections closed at once (before any TLS handshake) because a connection limit was reached.',
    registers: [this.registry],
  });
  readonly closedConnections = new Counter({
    name: 'callprobe_reflector_closed_connections_total',
    help: 'Connections the reflector closed itself, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly sources = new Gauge({
    name: 'callprobe_reflector_sources',
    help: 'Sources (IPv4 addresses, IPv6 /64s) that sent something authentic and have live rate-limit state.',
    registers: [this.registry],
  });
  readonly sourceEvictions = new Counter({
    name: 'callprobe_reflector_source_evictions_total',
    help: 'Sources forgotten before they were idle, to make room for a new one (the table was full).',
    registers: [this.registry],
  });
  readonly sendErrors = new Counter({
    name: 'callprobe_reflector_send_errors_total',
    help: 'Echoes and stream data the socket refused or failed to send, by transport.',
    labelNames: ['transport'] as const,
    registers: [this.registry],
  });
  readonly handlerErrors = new Counter({
    name: 'callprobe_reflector_handler_errors_total',
    help: 'Exceptions caught in the event handlers of the reflector (bugs): what was being handled is dropped.',
    registers: [this.registry],
  });

  constructor() {
    new Gauge({ name: 'callprobe_reflector_build_info', help: 'Always 1; the label says which callprobe runs.', labelNames: ['version'] as const, registers: [this.registry] })
      .labels(VERSION)
      .set(1);
    for (const t of TRANSPORTS) {
      for (const r of PACKET_RESULTS) {
        // Source port 0 and reports are UDP things: a TCP peer always has a port, and asks no reports.
        if (t === 'udp' || (r !== 'bad_source' && r !== 'report')) this.packets.labels(t, r).inc(0);
      }
      for (const d of ['in', 'out']) this.bytes.labels(t, d).inc(0);
      this.sendErrors.labels(t).inc(0);
      if (t !== 'udp') {
        for (const r of STREAM_RESULTS) this.streams.labels(t, r).inc(0);
        this.connections.labels(t).set(0);
      }
    }
    for (const r of CLOSE_REASONS) this.closedConnections.labels(r).inc(0);
    this.refusedConnections.inc(0);
    this.sources.set(0);
    this.sourceEvictions.inc(0);
    this.handlerErrors.inc(0);
    collectDefaultMetrics({ register: this.registry });
    // As in src/sinks/metrics.ts: gauges prom-client names `_total`, which promtool flags.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(name);
    }
  }
}

/** GET /metrics and /healthz, nothing else. */
export function metricsServer(registry: Registry): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', version: VERSION }) + '\n');
    } else {
      res.writeHead(404).end();
    }
  });
}
