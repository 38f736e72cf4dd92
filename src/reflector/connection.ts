import { randomFillSync } from 'node:crypto';
import type { Socket } from 'node:net';
import { verifyTag } from '../protocol/media-packet.js';
import type { SourceTable } from './limits.js';
import type { ReflectorMetrics, ReflectorTransport } from './metrics.js';
import { FrameReader, MAX_REFLECTOR_FRAME_LENGTH, encodeFrame, verifyStreamRequest, type StreamRefusalReason, type VerifiedStreamRequest } from '../protocol/reflector.js';

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
 * request is answered with the proof and N bytes, or refused with an authenticated refusal and a
 * FIN (protocol.ts). The connection is closed when it idles for `idleMs`, when its peer does not
 * read its echoes (MAX_BACKLOG_BYTES), or when a length header exceeds the largest media packet.
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
    if (request.bytesRequested > ctx.streamMaxBytes) return refuse('too_large');
    // The source is known: its request just passed the gate.
    const now = performance.now();
    if (!table.touch(source, now)?.streams.take(1, now)) return refuse('rate_limited');
    metrics.streams.labels(transport, 'served').inc();
    sendStream(request.proof, request.bytesRequested);
  };

  const sendStream = (proof: Buffer, total: number): void => {
    socket.write(proof);
    metrics.bytes.labels(transport, 'out').inc(proof.length);
    let left = total;
    const pump = contain((): void => {
      while (left > 0 && !socket.destroyed) {
        const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(STREAM_CHUNK, left)));
        left -= chunk.length;
        metrics.bytes.labels(transport, 'out').inc(chunk.length);
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
    });
    pump();
  };

  socket.on(
    'data',
    contain((chunk: Buffer) => {
      metrics.bytes.labels(transport, 'in').inc(chunk.length);
      // After a stream request the connection only carries the reply: later input is ignored.
      if (streaming || socket.destroyed) return;
      for (const frame of reader.push(chunk)) if (!onFrame(frame)) return;
      if (reader.oversized !== null) close('oversized_frame');
    }),
  );
}
