import type { Socket } from 'node:net';
import type { WebSocket, RawData } from 'ws';
import { ProbeFailure } from '../failure.js';
import type { Evidence } from '../result.js';
import { hexPrefix } from '../evidence.js';

/**
 * A request/response exchange over whatever the earlier phases opened: a TCP or TLS socket, or a
 * WebSocket (each binary message is a chunk of one byte stream). It is the one place where a
 * protocol phase's evidence is collected: bytes each way, the first bytes received, the time to
 * the first byte, and how the stream ended (FIN -> eof_error, RST -> connection_reset, a
 * WebSocket close -> eof_error with its code and reason).
 */
export interface Conversation {
  readonly transport: 'stream' | 'websocket';
  send(bytes: Uint8Array): void;
  /** The next chunk from the peer. Rejects when the stream ends, fails or the signal fires. */
  receive(): Promise<Buffer>;
}

export function openConversation(
  target: { socket?: Socket; ws?: WebSocket; tcp?: Socket },
  signal: AbortSignal,
  evidence: Evidence,
): Conversation {
  const started = performance.now();
  const chunks: Buffer[] = [];
  let ended: ProbeFailure | Error | null = null;
  let waiter: { resolve: (b: Buffer) => void; reject: (e: unknown) => void } | null = null;
  let firstBytes = Buffer.alloc(0);
  evidence.bytesSent = 0;
  evidence.bytesReceived = 0;

  const deliver = (chunk: Buffer): void => {
    if (evidence.bytesReceived === 0) evidence.timeToFirstByteMs = Math.round((performance.now() - started) * 1000) / 1000;
    evidence.bytesReceived = (evidence.bytesReceived ?? 0) + chunk.length;
    if (firstBytes.length < 64) {
      firstBytes = Buffer.concat([firstBytes, chunk.subarray(0, 64 - firstBytes.length)]);
      evidence.firstBytesHex = hexPrefix(firstBytes);
    }
    if (waiter) {
      const w = waiter;
      waiter = null;
      w.resolve(chunk);
    } else chunks.push(chunk);
  };
  const fail = (err: ProbeFailure | Error): void => {
    ended ??= err;
    if (waiter) {
      const w = waiter;
      waiter = null;
      w.reject(ended);
    }
  };
  /** Listeners to take off when the phase ends, so a later phase on the same connection starts clean. */
  const detach: Array<() => void> = [];
  const listen = <T extends Socket | WebSocket>(emitter: T, event: string, fn: (...args: never[]) => void): void => {
    (emitter as unknown as NodeJS.EventEmitter).on(event, fn as (...args: unknown[]) => void);
    detach.push(() => (emitter as unknown as NodeJS.EventEmitter).off(event, fn as (...args: unknown[]) => void));
  };
  const onAbort = (): void => {
    fail(signal.reason as Error);
    for (const off of detach.splice(0)) off();
    chunks.length = 0;
    // Bytes that arrive between phases wait in the socket for the next phase's conversation.
    target.socket?.pause();
  };
  signal.addEventListener('abort', onAbort, { once: true });

  let send: (bytes: Uint8Array) => void;
  let transport: Conversation['transport'];
  if (target.ws) {
    const ws = target.ws;
    transport = 'websocket';
    // ws turns a reset of its socket into a plain close 1006: watch the TCP socket underneath so an
    // injected RST is reported as connection_reset, not as an orderly close.
    let tcpError: string | null = null;
    if (target.tcp) listen(target.tcp, 'error', (err: NodeJS.ErrnoException) => (tcpError ??= err.code ?? err.message));
    listen(ws, 'message', (data: RawData) => deliver(toBuffer(data)));
    listen(ws, 'close', (code: number, reason: Buffer) => {
      if (tcpError === 'ECONNRESET') return fail(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
      fail(
        new ProbeFailure('eof_error', `WebSocket closed by the peer (${code} ${reason.toString('utf8').slice(0, 128)})`, {
          wsCloseCode: code,
          wsCloseReason: reason.toString('utf8').slice(0, 128),
        }),
      );
    });
    listen(ws, 'error', (err: NodeJS.ErrnoException) =>
      fail(
        err.code?.startsWith('WS_ERR_')
          ? new ProbeFailure('proto_malformed', `invalid WebSocket frame from the peer: ${err.message.slice(0, 128)}`, { error: err.code })
          : err,
      ),
    );
    send = (bytes) => {
      evidence.bytesSent = (evidence.bytesSent ?? 0) + bytes.length;
      ws.send(bytes, { binary: true });
    };
  } else if (target.socket) {
    const socket = target.socket;
    transport = 'stream';
    listen(socket, 'data', (d: Buffer) => deliver(d));
    listen(socket, 'end', () => fail(new ProbeFailure('eof_error', 'connection closed by the peer (FIN)')));
    listen(socket, 'error', (err: Error) => fail(err));
    listen(socket, 'close', () => fail(new ProbeFailure('eof_error', 'connection closed')));
    // A socket can error after its listeners are detached: a no-op keeps that from crashing the process.
    if (!guarded.has(socket)) {
      guarded.add(socket);
      socket.on('error', () => {});
    }
    socket.resume();
    send = (bytes) => {
      evidence.bytesSent = (evidence.bytesSent ?? 0) + bytes.length;
      socket.write(bytes);
    };
  } else {
    throw new ProbeFailure('internal_error', 'no open connection to talk over');
  }

  return {
    transport,
    send,
    receive(): Promise<Buffer> {
      const next = chunks.shift();
      if (next) return Promise.resolve(next);
      if (ended) return Promise.reject(ended);
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
  };
}

const guarded = new WeakSet<Socket>();

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
