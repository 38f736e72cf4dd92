import type { RawData } from 'ws';
import { ProbeFailure, failureOf } from '../failure.js';
import type { Connection } from './connection.js';
import { watchStreamEnd } from './stream-end.js';
import type { PhaseTrace, TrafficCounter } from './trace.js';

/**
 * A request/response exchange over the connection the earlier phases opened: its TCP or TLS byte
 * stream, or its WebSocket (each binary message is a chunk of one byte stream). The counter
 * records bytes each way, the first bytes received and the time to the first byte; how the
 * stream ended becomes the failure: FIN -> `eof_error`, RST -> `connection_reset` (also when the
 * system reports the reset as an end of stream, stream-end.ts, and under a WebSocket, whose
 * library reports a reset as a plain close), a WebSocket close -> `eof_error`
 * with its code and reason, a peer's invalid WebSocket frame -> `proto_malformed`.
 */
export interface Conversation {
  readonly transport: 'stream' | 'websocket';
  /** Queues bytes to the peer; `written` runs once the socket has handed them on (for TLS: encrypted onto the TCP socket). */
  send(bytes: Uint8Array, written?: () => void): void;
  /** The next chunk from the peer. Rejects when the stream ends, fails or the signal fires. */
  receive(): Promise<Buffer>;
}

/**
 * Chunks kept for a reader that is not reading: past this the source is paused (TCP flow control
 * then holds the peer back), so a peer flooding us costs a bounded amount of memory.
 */
const MAX_QUEUED_BYTES = 1024 * 1024;

export function openConversation(connection: Connection, signal: AbortSignal, counter: TrafficCounter, trace?: PhaseTrace): Conversation {
  const chunks: Buffer[] = [];
  let queued = 0;
  let ended: unknown = null;
  let waiter: { resolve: (b: Buffer) => void; reject: (e: unknown) => void } | null = null;
  const { ws, stream, tcp } = connection;

  const deliver = (chunk: Buffer): void => {
    counter.received(chunk);
    if (waiter) {
      const w = waiter;
      waiter = null;
      return w.resolve(chunk);
    }
    chunks.push(chunk);
    queued += chunk.length;
    if (queued > MAX_QUEUED_BYTES) (ws ?? stream).pause();
  };
  const fail = (err: unknown): void => {
    ended ??= err;
    if (waiter) {
      const w = waiter;
      waiter = null;
      w.reject(ended);
    }
  };
  /** Listeners to take off when the phase ends, so a later phase on the same connection starts clean. */
  const detach: Array<() => void> = [];
  const listen = (emitter: NodeJS.EventEmitter, event: string, fn: (...args: never[]) => void): void => {
    emitter.on(event, fn as (...args: unknown[]) => void);
    detach.push(() => emitter.off(event, fn as (...args: unknown[]) => void));
  };
  const onAbort = (): void => {
    fail(signal.reason);
    for (const off of detach.splice(0)) off();
    chunks.length = 0;
    queued = 0;
    // Bytes that arrive between phases wait in the socket for the next phase's conversation.
    stream.pause();
  };
  signal.addEventListener('abort', onAbort, { once: true });

  let send: Conversation['send'];
  if (ws) {
    // ws turns a reset of its socket into a plain close 1006: watch the TCP socket underneath so an
    // injected RST is reported as connection_reset, not as an orderly close.
    let tcpError: NodeJS.ErrnoException | null = null;
    listen(tcp, 'error', (err: NodeJS.ErrnoException) => (tcpError ??= err));
    // And a reset the system reported as an end of stream (stream-end.ts) is a reset too.
    detach.push(watchStreamEnd(stream, tcp, (end) => void end.then((e) => e.how === 'rst' && (tcpError ??= e.error))));
    listen(ws, 'message', (data: RawData) => deliver(toBuffer(data)));
    listen(ws, 'close', (code: number, reason: Buffer) => {
      if (tcpError?.code === 'ECONNRESET') {
        trace?.closed({ transport: connection.transport, how: 'rst' });
        return fail(failureOf(tcpError, 'read'));
      }
      const text = reason.toString('utf8').slice(0, 128);
      trace?.closed({ transport: connection.transport, how: 'ws-close', detail: `${code} ${text}` });
      fail(new ProbeFailure('eof_error', `WebSocket closed by the peer (${code} ${text})`, { wsCloseCode: code, wsCloseReason: text }));
    });
    listen(ws, 'error', (err: Error) => fail(failureOf(err, 'read')));
    send = (bytes, written) => {
      counter.sent(bytes.length);
      ws.send(bytes, { binary: true }, written && (() => written()));
    };
  } else {
    // Once the stream reported its end, the kernel's answer to how it ended decides, not the
    // 'error' or 'close' that asking it may cause.
    let endReported = false;
    listen(stream, 'data', (d: Buffer) => deliver(d));
    detach.push(
      watchStreamEnd(stream, tcp, (answer) => {
        endReported = true;
        void answer.then((end) => {
          if (end.how === 'rst') {
            trace?.closed({ transport: connection.transport, how: 'rst', detail: 'reported as an end of stream' });
            return fail(
              new ProbeFailure('connection_reset', 'connection reset by the peer (RST, which the system reported as an end of stream)', { error: 'ECONNRESET' }, { cause: end.error, operation: 'read' }),
            );
          }
          trace?.closed({ transport: connection.transport, how: 'fin', ...(end.how === 'fin_then_rst' ? { detail: 'then RST' } : {}) });
          fail(new ProbeFailure('eof_error', 'connection closed by the peer (FIN)', end.how === 'fin_then_rst' ? { resetAfterFin: true } : {}));
        });
      }),
    );
    listen(stream, 'error', (err: NodeJS.ErrnoException) => {
      if (endReported) return;
      // A write into a reset connection fails too (ECONNRESET, then EPIPE): a send-heavy phase may learn of the RST that way.
      const operation = err.syscall === 'write' ? 'write' : 'read';
      trace?.closed({ transport: connection.transport, how: err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'rst' : 'error', detail: err.code ?? err.message });
      fail(failureOf(err, operation));
    });
    listen(stream, 'close', () => endReported || fail(new ProbeFailure('eof_error', 'connection closed')));
    // A stream that ended before this phase began: say how, instead of waiting for the timeout.
    if (stream.destroyed) fail(stream.errored ? failureOf(stream.errored, 'read') : new ProbeFailure('eof_error', 'connection closed before this phase began'));
    stream.resume();
    send = (bytes, written) => {
      counter.sent(bytes.length);
      stream.write(bytes, written && (() => written()));
    };
  }

  return {
    transport: ws ? 'websocket' : 'stream',
    send,
    receive(): Promise<Buffer> {
      const next = chunks.shift();
      if (next) {
        queued -= next.length;
        if (queued <= MAX_QUEUED_BYTES) (ws ?? stream).resume();
        return Promise.resolve(next);
      }
      if (ended) return Promise.reject(ended);
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
  };
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
