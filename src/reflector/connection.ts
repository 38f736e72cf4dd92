import { randomFillSync } from 'node:crypto';
import type { Socket } from 'node:net';
import { verifyTag } from '../protocol/media-packet.js';
import type { SourceTable } from './limits.js';
import type { ReflectorMetrics, ReflectorTransport } from './metrics.js';
import {
  FrameReader,
  FRAME_HEADER_LENGTH,
  MAX_REFLECTOR_FRAME_LENGTH,
  STREAM_PROOF_LENGTH,
  STREAM_REQUEST_LENGTH,
  downloads,
  encodeFrame,
  uploads,
  verifyStreamRequest,
  type StreamRefusalReason,
  type VerifiedStreamRequest,
} from '../protocol/reflector.js';
import { ACK_RECORD_LENGTH, MAX_DATA_BODY, RecordWriter } from '../protocol/stream-records.js';

export interface ConnectionContext {
  readonly key: Uint8Array;
  readonly table: SourceTable;
  readonly metrics: ReflectorMetrics;
  readonly streamMaxBytes: number;
  readonly idleMs: number;
  /** Wraps an event handler so that nothing it throws escapes (server.ts counts and logs it). */
  readonly contain: <A extends unknown[]>(handler: (...args: A) => void) => (...args: A) => void;
}

/** Stream-test data goes out in chunks of this size, each written once the socket drained. */
const STREAM_CHUNK = 16 * 1024;

/**
 * Echoes waiting to be sent beyond which the peer is taken not to read: 256 KiB is about 2000
 * echoes of the largest voice-sized frame, 40 s of a 50 packets/s stream that a probe reading
 * its echoes never lets pile up, and it bounds what one connection can make the reflector hold.
 */
export const MAX_BACKLOG_BYTES = 256 * 1024;

/**
 * One TCP or TLS connection (already counted against the connection limits by server.ts):
 * RFC 4571 frames in; an authentic media packet is echoed as the same frame; an authentic stream
 * request is answered with the proof and, by its direction, N bytes (download), acknowledgements
 * of the N bytes the prober then sends (upload), or both at once; or it is refused with an
 * authenticated refusal and a FIN (protocol/reflector.ts). The connection is closed when it idles
 * for `idleMs`, when its peer does not read its echoes (MAX_BACKLOG_BYTES), or when a length
 * header exceeds the largest media packet.
 */
export function serveConnection(socket: Socket, transport: ReflectorTransport, source: string, ctx: ConnectionContext): void {
  const { key, table, metrics, contain } = ctx;
  const close = (reason: 'idle' | 'backlog' | 'oversized_frame'): void => {
    metrics.closedConnections.labels(reason).inc();
    socket.destroy();
  };
  metrics.connections.labels(transport).inc();
  socket.setNoDelay(true);
  // Counts reads and writes as activity: a stream still being sent is not idle.
  socket.setTimeout(ctx.idleMs, contain(() => close('idle')));
  // An error is followed by 'close'; a failed write is worth counting, a reset read is routine.
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (err.syscall === 'write') metrics.sendErrors.labels(transport).inc();
  });
  socket.on('close', contain(() => metrics.connections.labels(transport).dec()));
  const reader = new FrameReader(MAX_REFLECTOR_FRAME_LENGTH);
  let streaming = false;
  /** The upload of an upload or both-way stream test, once its request was served. */
  let upload: UploadReceiver | null = null;

  const onFrame = (frame: Buffer): boolean => {
    const found: { request?: VerifiedStreamRequest } = {};
    const admission = table.admit(source, frame.length, performance.now(), () => {
      const request = verifyStreamRequest(frame, key);
      if (request) found.request = request;
      return request !== null || verifyTag(frame, key) !== null;
    });
    metrics.sources.set(table.size);
    if (admission !== 'ok') {
      metrics.packets.labels(transport, admission).inc();
      return true;
    }
    if (found.request) {
      streaming = true;
      answerStream(found.request);
      return false;
    }
    metrics.packets.labels(transport, 'echoed').inc();
    metrics.bytes.labels(transport, 'out').inc(frame.length + 2);
    socket.write(encodeFrame(frame));
    if (socket.writableLength > MAX_BACKLOG_BYTES) {
      close('backlog');
      return false;
    }
    return true;
  };

  const answerStream = (request: VerifiedStreamRequest): void => {
    const refuse = (reason: StreamRefusalReason): void => {
      metrics.streams.labels(transport, reason).inc();
      metrics.bytes.labels(transport, 'out').inc(request.refusals[reason].length);
      socket.end(request.refusals[reason]);
    };
    // Both limits hold whatever the direction: an upload's N is read and acknowledged, not sent.
    if (request.bytesRequested > ctx.streamMaxBytes) return refuse('too_large');
    // The source is known: its request just passed the gate.
    const now = performance.now();
    if (!table.touch(source, now)?.streams.take(1, now)) return refuse('rate_limited');
    metrics.streams.labels(transport, 'served').inc();
    send(request.proof);
    if (request.direction === 'download') return pump(request.bytesRequested, (n) => randomFillSync(Buffer.allocUnsafe(n)), STREAM_CHUNK);
    const records = new RecordWriter(key, request.tag);
    if (uploads(request.direction)) upload = new UploadReceiver(request.bytesRequested, (received) => send(records.ack(received)));
    if (downloads(request.direction)) pump(request.bytesRequested, (n) => records.data(n), MAX_DATA_BODY);
  };

  const send = (bytes: Buffer): boolean => {
    metrics.bytes.labels(transport, 'out').inc(bytes.length);
    return socket.write(bytes);
  };

  /** Sends `total` bytes of download in pieces of at most `most`, each once the socket drained. */
  const pump = (total: number, piece: (n: number) => Buffer, most: number): void => {
    let left = total;
    const next = contain((): void => {
      while (left > 0 && !socket.destroyed) {
        const n = Math.min(most, left);
        left -= n;
        if (!send(piece(n))) {
          socket.once('drain', next);
          return;
        }
      }
    });
    next();
  };

  socket.on(
    'data',
    contain((chunk: Buffer) => {
      metrics.bytes.labels(transport, 'in').inc(chunk.length);
      if (socket.destroyed) return;
      // After a stream request the connection carries its upload, if any: other input is ignored.
      if (streaming) return upload?.received(chunk.length);
      const rest = reader.take(chunk, onFrame);
      if (rest !== null && rest.length > 0) upload?.received(rest.length);
      if (reader.oversized !== null) close('oversized_frame');
    }),
  );
}

/**
 * What arrived of a stream test's upload, and its acknowledgements. They are never more bytes
 * than arrived (no amplification): proof and acks together stay within what the prober sent (its
 * request and upload), and an ack goes out only if that budget still holds one for the final
 * count, so the prober always learns that everything arrived. Within the budget, each chunk read
 * is acknowledged at once: where acks stop is where the upload was last seen arriving.
 */
class UploadReceiver {
  private got = 0;
  /** Bytes received on the connection (the framed request, then the upload) less bytes sent in answer (the proof, then acks). */
  private budget = FRAME_HEADER_LENGTH + STREAM_REQUEST_LENGTH - STREAM_PROOF_LENGTH;

  constructor(
    private readonly total: number,
    private readonly sendAck: (received: number) => void,
  ) {}

  received(bytes: number): void {
    // Beyond N nothing counts: the test is N bytes.
    const counted = Math.min(bytes, this.total - this.got);
    if (counted <= 0) return;
    this.got += counted;
    this.budget += counted;
    const done = this.got === this.total;
    if (this.budget < ACK_RECORD_LENGTH * (done ? 1 : 2)) return;
    this.budget -= ACK_RECORD_LENGTH;
    this.sendAck(this.got);
  }
}
