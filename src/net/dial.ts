import { Socket, isIP } from 'node:net';
import { ProbeFailure } from '../failure.js';
import type { SafetyGuard } from '../engine/guard.js';

export interface DialOptions {
  address: string;
  port: number;
  guard: SafetyGuard;
  signal: AbortSignal;
}

/**
 * Connects a TCP socket after the safety guard approved the destination; nothing is sent to a
 * denied address. Resolves once the three-way handshake completed. On abort the socket is
 * destroyed, so a blackholed SYN never outlives its phase.
 */
export function dialTcp({ address, port, guard, signal }: DialOptions): Promise<Socket> {
  guard.assert(address);
  if (isIP(address) === 0) {
    return Promise.reject(new ProbeFailure('internal_error', `dialTcp needs an IP address, got ${address}`));
  }
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const socket = new Socket();
    const onAbort = (): void => {
      socket.destroy();
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(err);
    });
    socket.connect({ host: address, port, noDelay: true }, () => {
      signal.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

/**
 * Watches how a connection ends, because Node reports a FIN during a TLS handshake as ECONNRESET:
 * the taxonomy separates `eof_error` (orderly close) from `connection_reset` (RST).
 */
export interface CloseWatch {
  readonly sawEnd: boolean;
  readonly sawError: string | null;
}

export function watchClose(socket: Socket): CloseWatch {
  const watch = { sawEnd: false, sawError: null as string | null };
  socket.on('end', () => {
    watch.sawEnd = true;
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    watch.sawError ??= err.code ?? err.message;
  });
  return watch;
}

/** `host:port`, with IPv6 literals bracketed. */
export function formatEndpoint(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Lower-case hex of at most `max` bytes: evidence stays bounded (design.md §4). */
export function hexPrefix(bytes: Uint8Array, max = 64): string {
  return Buffer.from(bytes.subarray(0, max)).toString('hex');
}
