import { Socket, isIP } from 'node:net';
import { ProbeFailure } from '../failure.js';
import type { DestinationGuard } from '../types.js';

export interface DialOptions {
  address: string;
  port: number;
  guard: DestinationGuard;
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
