import { Socket, isIP } from 'node:net';
import { ProbeFailure, failureOf } from '../failure.js';
import type { DestinationGuard } from '../types.js';
import { abortable } from './abort.js';
import { absorbErrors } from './connection.js';
import type { PhaseTrace } from './trace.js';

export interface DialOptions {
  address: string;
  port: number;
  guard: DestinationGuard;
  signal: AbortSignal;
  trace?: PhaseTrace;
}

/**
 * Connects a TCP socket after the safety guard approved the destination; nothing is sent to a
 * denied address. Resolves once the three-way handshake completed. On abort the socket is
 * destroyed, so a blackholed SYN never outlives its phase. Errors are classified as `connect`
 * failures (an RST to the SYN is `connection_refused`, ICMP is `*_unreachable`).
 */
export async function dialTcp({ address, port, guard, signal, trace }: DialOptions): Promise<Socket> {
  guard.assert(address);
  if (isIP(address) === 0) throw new ProbeFailure('internal_error', `dialTcp needs an IP address, got ${address}`);
  const socket = new Socket();
  const startedAt = performance.now();
  try {
    await abortable<void>(signal, (resolve, reject) => {
      socket.once('error', reject);
      socket.connect({ host: address, port, noDelay: true }, resolve);
      return () => socket.off('error', reject);
    });
  } catch (err) {
    socket.destroy();
    trace?.connected({ transport: 'tcp', address, port, ms: performance.now() - startedAt, error: (err as { code?: string }).code ?? 'aborted' });
    throw failureOf(err, 'connect');
  }
  trace?.connected({ transport: 'tcp', address, port, ms: performance.now() - startedAt });
  absorbErrors(socket);
  return socket;
}
