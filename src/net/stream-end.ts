import type { Socket } from 'node:net';

/**
 * How a TCP connection whose stream reported its end really ended: the peer's FIN, or an RST.
 *
 * Node cannot be taken at its word here. On Linux, when an RST arrives while received data is
 * still unread, epoll reports the socket readable and hung up at once (EPOLLIN | EPOLLHUP |
 * EPOLLERR); libuv reads the data, and since that read was shorter than its buffer and the socket
 * hung up, it reports the end of the stream without the next read that would have returned
 * ECONNRESET (the POLLHUP short-circuit in uv__stream_io). Node then emits 'end' and a 'close'
 * without error, exactly as for a FIN. That is what a censor's reset looks like whenever it
 * follows data closely: in the lab, 17 of 18 resets injected in place of a data segment
 * (test/lab/stream.test.ts) came out of Node as 'end'.
 *
 * The kernel still holds the reset as the socket's pending error, so one syscall tells: a
 * zero-length write on a connection that was reset fails with ECONNRESET (EPIPE when the RST
 * came after the peer's FIN: tcp_reset in CLOSE_WAIT), and on a connection the peer only closed
 * (CLOSE_WAIT, where our side may still send) it succeeds and puts nothing on the wire.
 */
export type StreamEnd =
  /** The peer's FIN ended the stream. */
  | { how: 'fin' }
  /** An RST ended it (reported by Node as 'end': the ECONNRESET the kernel held is in `error`). */
  | { how: 'rst'; error: NodeJS.ErrnoException }
  /** The peer's FIN ended it, and an RST came after (the kernel's EPIPE is in `error`). */
  | { how: 'fin_then_rst'; error: NodeJS.ErrnoException };

const NOTHING = Buffer.alloc(0);

/**
 * Asks the kernel how the connection under `tcp` ended. Call it from within the stream's 'end'
 * event, before Node's own end() of our side (on the next tick; with our FIN sent, a write fails
 * whatever happened): `watchStreamEnd` arranges that.
 */
export function askHowEnded(tcp: Socket): Promise<StreamEnd> {
  // A socket already closed or ended on our side can no longer ask; what Node said stands.
  if (tcp.destroyed || tcp.writableEnded) return Promise.resolve({ how: 'fin' });
  return new Promise((resolve) => {
    tcp.write(NOTHING, (err?: Error | null) => {
      const e = err as NodeJS.ErrnoException | null | undefined;
      if (e?.code === 'ECONNRESET') resolve({ how: 'rst', error: e });
      else if (e?.code === 'EPIPE' && e.syscall === 'write') resolve({ how: 'fin_then_rst', error: e });
      else resolve({ how: 'fin' });
    });
  });
}

/**
 * Hands `onEnd` the kernel's answer to how the connection ended, the moment `stream` (the TCP
 * socket, or TLS over it) reports its end. The listener goes first, before Node's and any
 * library's own (a WebSocket ends its socket in its 'end' listener), so the question is asked
 * while it can be. Returns the function that stops watching.
 */
export function watchStreamEnd(stream: NodeJS.EventEmitter, tcp: Socket, onEnd: (end: Promise<StreamEnd>) => void): () => void {
  const listener = (): void => onEnd(askHowEnded(tcp));
  stream.prependListener('end', listener);
  return () => stream.off('end', listener);
}
