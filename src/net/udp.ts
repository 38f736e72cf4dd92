import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { ProbeFailure, failureOf } from '../failure.js';
import type { DestinationGuard } from '../types.js';
import { abortable } from './abort.js';
import type { PhaseTrace, TrafficCounter } from './trace.js';

/**
 * A connected UDP socket: the datagram counterpart of `openConversation`. Connecting (rather than
 * `send(msg, port, host)`) does three things a probe wants: the kernel picks and reports the local
 * address actually used (so a STUN mapped address can be compared with it), an ICMP port
 * unreachable from the destination surfaces as ECONNREFUSED (`connection_refused`) instead of
 * silence, and a destination with no route fails at once (`network_unreachable`) rather than
 * after the whole retransmission schedule. Datagrams from anyone else are dropped by the kernel.
 */
export interface DatagramChannel {
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /**
   * Hands a datagram to the kernel; false (nothing sent, nothing counted) once the socket failed
   * (an ICMP error such as port unreachable ends the channel) or was closed. A datagram counts as
   * sent when the kernel took it: one refused on the way out (no route) ends the channel instead.
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
  /** Counts the datagrams each way (into the phase's evidence, or a part of it). */
  counter: TrafficCounter;
  trace?: PhaseTrace;
}

/** Opens a UDP socket connected to address:port after the safety guard approved it. */
export async function dialUdp({ address, port, guard, signal, counter, trace }: DialUdpOptions): Promise<DatagramChannel> {
  guard.assert(address);
  const family = isIP(address);
  if (family === 0) throw new ProbeFailure('internal_error', `dialUdp needs an IP address, got ${address}`);
  const socket: UdpSocket = createSocket(family === 6 ? 'udp6' : 'udp4');
  const startedAt = performance.now();
  try {
    await abortable<void>(signal, (resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      socket.once('error', onError);
      socket.connect(port, address, (err?: Error) => (err ? reject(err) : resolve()));
      return () => socket.off('error', onError);
    });
  } catch (err) {
    socket.close();
    const failure = failureOf(err, 'connect');
    trace?.connected({ transport: 'udp', address, port, ms: performance.now() - startedAt, error: codeOf(err) });
    throw failure;
  }
  trace?.connected({ transport: 'udp', address, port, ms: performance.now() - startedAt });
  return new ConnectedChannel(socket, address, port, signal, counter);
}

/** A peer that floods us cannot make the queue grow without bound; a probe reads a few datagrams. */
const MAX_QUEUED = 256;

class ConnectedChannel implements DatagramChannel {
  readonly localAddress: string;
  readonly localPort: number;
  private readonly queue: Buffer[] = [];
  private waiter: { resolve: (b: Buffer) => void; reject: (e: unknown) => void } | null = null;
  private ended: unknown = null;
  private closed = false;
  private readonly onAbort = (): void => {
    this.fail(this.signal.reason);
    this.close();
  };

  constructor(
    private readonly socket: UdpSocket,
    readonly remoteAddress: string,
    readonly remotePort: number,
    private readonly signal: AbortSignal,
    private readonly counter: TrafficCounter,
  ) {
    const local = socket.address();
    this.localAddress = local.address;
    this.localPort = local.port;
    signal.addEventListener('abort', this.onAbort, { once: true });
    // An ICMP error (port or host unreachable) for this connected socket ends the channel.
    socket.on('error', (err) => this.fail(failureOf(err, 'read')));
    socket.on('message', (msg: Buffer) => {
      counter.received(msg);
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = null;
        w.resolve(msg);
      } else if (this.queue.length < MAX_QUEUED) this.queue.push(msg);
    });
    if (signal.aborted) this.onAbort();
  }

  send(bytes: Uint8Array): boolean {
    if (this.closed || this.ended) return false;
    try {
      this.socket.send(bytes, (err) => {
        if (err) this.fail(failureOf(err, 'write'));
        else this.counter.sent(bytes.length);
      });
    } catch (err) {
      this.fail(failureOf(err, 'write'));
      return false;
    }
    return true;
  }

  receive(): Promise<Buffer> {
    const next = this.queue.shift();
    if (next) return Promise.resolve(next);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.signal.removeEventListener('abort', this.onAbort);
    this.fail(SOCKET_CLOSED);
    this.socket.close();
  }

  private fail(err: unknown): void {
    this.ended ??= err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(this.ended);
    }
  }
}

function codeOf(err: unknown): string {
  return (err as { code?: string })?.code ?? String((err as Error)?.message ?? err);
}

/** One shared error: closing is routine, and building an Error (with its stack) per close shows in profiles. */
const SOCKET_CLOSED = new ProbeFailure('interrupted', 'UDP socket closed');
