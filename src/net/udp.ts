import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { ProbeFailure } from '../failure.js';
import type { DestinationGuard } from '../types.js';
import { hexPrefix } from '../evidence.js';

/** What a datagram channel counts as it goes (merged into a phase's evidence, or a part of it). */
export interface DatagramCounts {
  bytesSent?: number;
  bytesReceived?: number;
  datagramsSent?: number;
  datagramsReceived?: number;
  firstBytesHex?: string;
  [key: string]: unknown;
}

/**
 * A connected UDP socket: the datagram counterpart of `openConversation`. Connecting (rather than
 * `send(msg, port, host)`) does two things a probe wants: the kernel picks and reports the local
 * address actually used (so a STUN mapped address can be compared with it), and an ICMP port
 * unreachable from the destination surfaces as ECONNREFUSED (`connection_refused`) instead of
 * silence. Datagrams from anyone else are dropped by the kernel.
 */
export interface DatagramChannel {
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /**
   * Hands a datagram to the kernel; false (nothing sent, nothing counted) once the socket failed
   * (an ICMP error such as port unreachable ends the channel) or was closed.
   */
  send(bytes: Uint8Array): boolean;
  /** The next datagram. Rejects once the socket failed, was closed, or the signal fired. */
  receive(): Promise<Buffer>;
  close(): void;
}

export interface DialUdpOptions {
  address: string;
  port: number;
  guard: DestinationGuard;
  signal: AbortSignal;
  /** Counters are written here as datagrams go each way. */
  counts?: DatagramCounts;
}

/** Opens a UDP socket connected to address:port after the safety guard approved it. */
export function dialUdp({ address, port, guard, signal, counts = {} }: DialUdpOptions): Promise<DatagramChannel> {
  guard.assert(address);
  const family = isIP(address);
  if (family === 0) return Promise.reject(new ProbeFailure('internal_error', `dialUdp needs an IP address, got ${address}`));
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const socket: UdpSocket = createSocket(family === 6 ? 'udp6' : 'udp4');
    const queue: Buffer[] = [];
    let waiter: { resolve: (b: Buffer) => void; reject: (e: unknown) => void } | null = null;
    let ended: unknown = null;
    let closed = false;
    let firstBytes = Buffer.alloc(0);
    counts.bytesSent ??= 0;
    counts.bytesReceived ??= 0;
    counts.datagramsSent ??= 0;
    counts.datagramsReceived ??= 0;

    const fail = (err: unknown): void => {
      ended ??= err;
      if (waiter) {
        const w = waiter;
        waiter = null;
        w.reject(ended);
      }
    };
    const close = (): void => {
      if (closed) return;
      closed = true;
      signal.removeEventListener('abort', onAbort);
      fail(SOCKET_CLOSED);
      socket.close();
    };
    const onAbort = (): void => {
      fail(signal.reason);
      close();
      if (!connected) reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    socket.on('error', (err) => fail(err));
    socket.on('message', (msg: Buffer) => {
      counts.bytesReceived = (counts.bytesReceived ?? 0) + msg.length;
      counts.datagramsReceived = (counts.datagramsReceived ?? 0) + 1;
      if (firstBytes.length === 0) {
        firstBytes = Buffer.from(msg.subarray(0, 64));
        counts.firstBytesHex = hexPrefix(firstBytes);
      }
      if (waiter) {
        const w = waiter;
        waiter = null;
        w.resolve(msg);
      } else if (queue.length < MAX_QUEUED) queue.push(msg);
    });
    let connected = false;
    socket.once('error', (err) => {
      if (connected) return;
      // Failed before connecting (e.g. EADDRNOTAVAIL): nothing to hand back.
      close();
      reject(err);
    });
    socket.connect(port, address, () => {
      connected = true;
      if (signal.aborted) return reject(signal.reason);
      const local = socket.address();
      resolve({
        localAddress: local.address,
        localPort: local.port,
        remoteAddress: address,
        remotePort: port,
        send(bytes: Uint8Array): boolean {
          if (closed || ended) return false;
          counts.bytesSent = (counts.bytesSent ?? 0) + bytes.length;
          counts.datagramsSent = (counts.datagramsSent ?? 0) + 1;
          socket.send(bytes);
          return true;
        },
        receive(): Promise<Buffer> {
          const next = queue.shift();
          if (next) return Promise.resolve(next);
          if (ended) return Promise.reject(ended);
          return new Promise((res, rej) => {
            waiter = { resolve: res, reject: rej };
          });
        },
        close,
      });
    });
  });
}

/** One shared error: closing is routine, and building an Error (with its stack) per close shows in profiles. */
const SOCKET_CLOSED = new ProbeFailure('interrupted', 'UDP socket closed');

/** A peer that floods us cannot make the queue grow without bound; a probe reads a few datagrams. */
const MAX_QUEUED = 256;
