import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { cryptoRng, encodeMediaPacket } from '../../src/protocol/media-packet.js';
import { datagramHandler, replyable } from '../../src/reflector/datagram.js';
import { FlowTable } from '../../src/reflector/flows.js';
import { SourceTable } from '../../src/reflector/limits.js';
import { ReflectorMetrics } from '../../src/reflector/metrics.js';

const KEY = Buffer.alloc(32, 0x42);
const LIMITS = {
  packetsPerSecond: 100,
  packetBurst: 100,
  bytesPerSecond: 1e6,
  byteBurst: 1e6,
  streamsPerMinute: 1,
  idleMs: 60_000,
  maxSources: 10,
  unauthenticatedPacketsPerSecond: 100,
  unauthenticatedBurst: 100,
};

const packet = (): Buffer => encodeMediaPacket({ shape: 'rtp', flowId: 1, seq: 0, sendTimeUs: 1, payloadSize: 100, key: KEY, rng: cryptoRng });

async function value(m: ReflectorMetrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === name)!;
  return metric.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
}

const sockets: UdpSocket[] = [];
async function boundSocket(): Promise<UdpSocket> {
  const s = createSocket('udp4');
  sockets.push(s);
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}
afterEach(() => {
  for (const s of sockets.splice(0)) {
    try {
      s.close();
    } catch {
      // closed by the test
    }
  }
});

describe('the UDP echo handler', () => {
  it('source port 0 cannot be replied to; ports 1-65535 can', () => {
    expect(replyable({ address: '127.0.0.1', port: 0 })).toBe(false);
    expect(replyable({ address: '127.0.0.1', port: 1 })).toBe(true);
    expect(replyable({ address: '127.0.0.1', port: 65535 })).toBe(true);
  });

  it('drops an authentic packet from source port 0 (which would make dgram throw), counted as bad_source', async () => {
    const sock = await boundSocket();
    const msg = packet();
    // What the handler used to do: a throw inside the 'message' handler ends the process.
    expect(() => sock.send(msg, 0, '127.0.0.1')).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_BAD_PORT' }));
    const metrics = new ReflectorMetrics();
    const table = new SourceTable(LIMITS);
    const handle = datagramHandler(sock, { key: KEY, table, flows: new FlowTable({ maxFlows: 10, idleMs: 60_000 }), metrics });
    expect(() => handle(msg, { address: '127.0.0.1', port: 0 })).not.toThrow();
    expect(await value(metrics, 'callprobe_reflector_packets_total', { transport: 'udp', result: 'bad_source' })).toBe(1);
    expect(await value(metrics, 'callprobe_reflector_packets_total', { transport: 'udp', result: 'echoed' })).toBe(0);
    expect(await value(metrics, 'callprobe_reflector_bytes_total', { transport: 'udp', direction: 'in' })).toBe(msg.length);
    expect(table.size).toBe(0); // no state, no HMAC
  });

  it('a send that throws at once (socket closed) is counted, not thrown', async () => {
    const sock = await boundSocket();
    sock.close();
    const metrics = new ReflectorMetrics();
    const handle = datagramHandler(sock, { key: KEY, table: new SourceTable(LIMITS), flows: new FlowTable({ maxFlows: 10, idleMs: 60_000 }), metrics });
    expect(() => handle(packet(), { address: '127.0.0.1', port: 5 })).not.toThrow();
    expect(await value(metrics, 'callprobe_reflector_send_errors_total', { transport: 'udp' })).toBe(1);
    expect(await value(metrics, 'callprobe_reflector_packets_total', { transport: 'udp', result: 'echoed' })).toBe(0);
  });

  it('a send that fails later (in its callback) is counted, with no error event', async () => {
    const sock = await boundSocket();
    const errors: Error[] = [];
    sock.on('error', (e) => errors.push(e));
    const metrics = new ReflectorMetrics();
    const handle = datagramHandler(sock, { key: KEY, table: new SourceTable(LIMITS), flows: new FlowTable({ maxFlows: 10, idleMs: 60_000 }), metrics });
    // An IPv6 destination on an IPv4 socket: dgram reports EINVAL to the send callback.
    handle(packet(), { address: '::1', port: 5 });
    expect(await value(metrics, 'callprobe_reflector_packets_total', { transport: 'udp', result: 'echoed' })).toBe(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(await value(metrics, 'callprobe_reflector_send_errors_total', { transport: 'udp' })).toBe(1);
    expect(errors).toEqual([]);
  });
});
