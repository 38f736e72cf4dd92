/**
 * The reflector's own config file (`callprobe reflector --config F`), validated like the probe's:
 * unknown keys are errors, every problem reported as FILE:LINE:COL (src/config/loader.ts).
 *
 *   key: 64+ hex digits               # the shared media key (openssl rand -hex 32); never logged
 *   listen:
 *     udp: ["0.0.0.0:3480"]           # media echo
 *     tcp: ["0.0.0.0:3480"]           # framed media echo and the stream test
 *     tls: [{ listen: "0.0.0.0:5349", cert: reflector.crt, key: reflector.key }]
 *   limits: { packetsPerSecond: 200, ... }   # per source address (see below)
 *   metrics: { listen: "127.0.0.1:9467" }    # /metrics and /healthz; listen: "" disables
 */
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { loadYaml } from '../config/loader.js';
import { mediaKeySchema } from '../config/media-key.js';
import { ipPortSchema } from '../net/address.js';
import { DEFAULT_STREAM_MAX_BYTES } from '../protocol/reflector.js';
import { duration, size } from '../units.js';

/**
 * Defaults sized for a handful of probes behind one address: a probe sends 50 packets/s per
 * stream and runs a service stream and its control at once (100 packets/s, about 20 kB/s with
 * headers at the largest Opus-like size); twice that leaves room for a few volunteers behind
 * one NAT.
 *
 * The unauthenticated bucket: checking a tag that fails costs about 10 µs (four HMAC-SHA256 over
 * a voice-sized packet, both polarities), so 2000 a second is 2 % of one core however large the
 * flood. A new probe needs one token to become known; under a flood of F packets/s each of its
 * packets gets one with a chance of about 2000/F (at 50 packets/s: within a second even at
 * F = 100 000).
 *
 * The TLS handshake timeout: a TLS 1.3 handshake takes one round trip, 1.2 two; 10 s leaves room
 * for several seconds of RTT and the retransmissions of a lossy path, where Node's 120 s default
 * lets a peer hold a connection slot for two minutes without ever finishing.
 */
export const reflectorConfigSchema = z
  .object({
    key: mediaKeySchema,
    listen: z
      .object({
        udp: z.array(ipPortSchema).default([]),
        tcp: z.array(ipPortSchema).default([]),
        tls: z.array(z.object({ listen: ipPortSchema, cert: z.string().min(1), key: z.string().min(1) }).strict()).default([]),
      })
      .strict()
      .refine((l) => l.udp.length + l.tcp.length + l.tls.length > 0, 'listen on at least one udp, tcp or tls address'),
    limits: z
      .object({
        packetsPerSecond: z.number().positive().default(200),
        packetBurst: z.number().int().min(1).default(400),
        bytesPerSecond: size.default(64 * 1024),
        byteBurst: size.default(128 * 1024),
        /** Stream-test requests (TCP/TLS), per source. */
        streamsPerMinute: z.number().int().min(1).default(30),
        /** The largest N a stream request may ask for. */
        streamMaxBytes: size.default(DEFAULT_STREAM_MAX_BYTES),
        /** Sources (IPv4 addresses, IPv6 /64s) with rate-limit state; when full the least recently used is forgotten. */
        maxSources: z.number().int().min(1).default(10_000),
        /** Media flows whose receive counts are kept for their echoes and reports; when full the least recently used is forgotten. */
        maxFlows: z.number().int().min(1).default(10_000),
        /** Packets from sources not yet known to hold the key, all sources together, checked per second. */
        unauthenticatedPacketsPerSecond: z.number().positive().default(2000),
        unauthenticatedBurst: z.number().int().min(1).default(2000),
        maxConnections: z.number().int().min(1).default(1024),
        maxConnectionsPerSource: z.number().int().min(1).default(16),
        /** A TLS connection whose handshake has not finished by then is closed. */
        handshakeTimeout: duration.refine((ms) => ms > 0, 'must be more than 0 (0 would let a handshake hold a connection forever)').prefault('10s'),
        /** Sources and connections idle this long are dropped. */
        idleTimeout: duration.prefault('60s'),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({ listen: z.union([ipPortSchema, z.literal('')]).default('127.0.0.1:9467') })
      .strict()
      .prefault({}),
  })
  .strict();

export type ReflectorConfig = z.output<typeof reflectorConfigSchema>;

/** Loads and validates a reflector config; TLS file paths become absolute (relative to the file). */
export function loadReflectorConfig(file: string): ReflectorConfig {
  const config = loadYaml(file, reflectorConfigSchema);
  const base = dirname(resolve(file));
  const abs = (p: string): string => (isAbsolute(p) ? p : join(base, p));
  return { ...config, listen: { ...config.listen, tls: config.listen.tls.map((t) => ({ ...t, cert: abs(t.cert), key: abs(t.key) })) } };
}
