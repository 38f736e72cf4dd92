import type { Socket as UdpSocket } from 'node:dgram';
import { verifyTag } from '../protocol/media-packet.js';
import { sourceKey, type SourceTable } from './limits.js';
import type { ReflectorMetrics } from './metrics.js';

export interface DatagramContext {
  readonly key: Uint8Array;
  readonly table: SourceTable;
  readonly metrics: ReflectorMetrics;
}

/** What the handler needs of the datagram's origin (dgram's RemoteInfo has more). */
export interface DatagramSource {
  readonly address: string;
  readonly port: number;
}

/**
 * The UDP echo: the 'message' handler of one reflector socket. An authentic media packet goes
 * back byte for byte to its source; anything else is counted and dropped. Nothing here throws:
 * a datagram from source port 0 is dropped before any send (dgram throws ERR_SOCKET_BAD_PORT for
 * it, and a throw in a 'message' handler ends the process), and a send that fails, at once or
 * later, is counted.
 */
export function datagramHandler(sock: Pick<UdpSocket, 'send'>, ctx: DatagramContext): (msg: Buffer, from: DatagramSource) => void {
  const { key, table, metrics } = ctx;
  const sendFailed = (): void => void metrics.sendErrors.labels('udp').inc();
  return (msg, from) => {
    metrics.bytes.labels('udp', 'in').inc(msg.length);
    if (!replyable(from)) return void metrics.packets.labels('udp', 'bad_source').inc();
    const admission = table.admit(sourceKey(from.address), msg.length, performance.now(), () => verifyTag(msg, key) !== null);
    metrics.sources.set(table.size);
    if (admission !== 'ok') return void metrics.packets.labels('udp', admission).inc();
    try {
      sock.send(msg, from.port, from.address, (err) => err && sendFailed());
    } catch {
      return sendFailed();
    }
    metrics.packets.labels('udp', 'echoed').inc();
    metrics.bytes.labels('udp', 'out').inc(msg.length);
  };
}

/** Can a reply reach this source? Port 0 is reserved (RFC 6335 §6) and no socket sends from it. */
export function replyable(from: DatagramSource): boolean {
  return Number.isInteger(from.port) && from.port > 0 && from.port <= 0xffff;
}
