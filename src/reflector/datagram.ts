import type { Socket as UdpSocket } from 'node:dgram';
import { encodeMediaEcho, verifyMediaRequest, type VerifiedMediaRequest } from '../protocol/media-packet.js';
import { REPORT_REQUEST_LENGTH, encodeReportReply, verifyReportRequest, type ReportRequest } from '../protocol/media-report.js';
import type { FlowTable } from './flows.js';
import { sourceKey, type SourceTable } from './limits.js';
import type { ReflectorMetrics } from './metrics.js';

export interface DatagramContext {
  readonly key: Uint8Array;
  readonly table: SourceTable;
  readonly flows: FlowTable;
  readonly metrics: ReflectorMetrics;
}

/** What the handler needs of the datagram's origin (dgram's RemoteInfo has more). */
export interface DatagramSource {
  readonly address: string;
  readonly port: number;
}

/**
 * The UDP echo: the 'message' handler of one reflector socket. An authentic media packet goes
 * back to its source as its echo, the same length: a v2 request with the reflector's counts of
 * its flow (src/protocol/media-packet.ts), a v1 request byte for byte. An authentic report
 * request gets the counts of the flow it names (src/protocol/media-report.ts), in fewer bytes
 * than it had. Anything else is counted and dropped. Nothing here throws: a datagram from source
 * port 0 is dropped before any send (dgram throws ERR_SOCKET_BAD_PORT for it, and a throw in a
 * 'message' handler ends the process), and a send that fails, at once or later, is counted.
 */
export function datagramHandler(sock: Pick<UdpSocket, 'send'>, ctx: DatagramContext): (msg: Buffer, from: DatagramSource) => void {
  const { key, table, flows, metrics } = ctx;
  const sendFailed = (): void => void metrics.sendErrors.labels('udp').inc();
  return (msg, from) => {
    metrics.bytes.labels('udp', 'in').inc(msg.length);
    if (!replyable(from)) return void metrics.packets.labels('udp', 'bad_source').inc();
    const source = sourceKey(from.address);
    const now = performance.now();
    const found: { request?: VerifiedMediaRequest; report?: ReportRequest } = {};
    const admission = table.admit(source, msg.length, now, () => {
      const request = verifyMediaRequest(msg, key);
      if (request) return Boolean((found.request = request));
      const report = msg.length === REPORT_REQUEST_LENGTH ? verifyReportRequest(msg, key) : null;
      return Boolean(report && (found.report = report));
    });
    metrics.sources.set(table.size);
    if (admission !== 'ok') return void metrics.packets.labels('udp', admission).inc();
    let reply: Buffer;
    let sent = (): void => {};
    let result: 'echoed' | 'report';
    if (found.report) {
      reply = encodeReportReply(found.report, flows.report(source, found.report.flowId), key);
      result = 'report';
    } else if (found.request!.version === 1) {
      reply = msg;
      result = 'echoed';
    } else {
      const request = found.request!;
      const counts = flows.received(source, request.flowId, request.seq, msg.length, now);
      reply = encodeMediaEcho(request, key, counts);
      sent = counts.echo;
      result = 'echoed';
    }
    try {
      sock.send(reply, from.port, from.address, (err) => (err ? sendFailed() : sent()));
    } catch {
      return sendFailed();
    }
    metrics.packets.labels('udp', result).inc();
    metrics.bytes.labels('udp', 'out').inc(reply.length);
  };
}

/** Can a reply reach this source? Port 0 is reserved (RFC 6335 §6) and no socket sends from it. */
export function replyable(from: DatagramSource): boolean {
  return Number.isInteger(from.port) && from.port > 0 && from.port <= 0xffff;
}
