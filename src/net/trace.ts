import { channel } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { hexPrefix, MAX_EVIDENCE_BYTES, roundMs } from '../evidence.js';
import type { Evidence } from '../result.js';

/**
 * What callprobe publishes as it probes, for anyone who subscribes (a debug log, a researcher's
 * own tooling): `node:diagnostics_channel` costs nothing while nobody listens. Every message
 * carries `probe` (service/target) and `phase`.
 */
export const TRACE_CHANNELS = {
  /** { probe, phase, endpoint } */
  phaseStart: channel('callprobe:phase:start'),
  /** { probe, phase, ok, failure, durationMs } */
  phaseEnd: channel('callprobe:phase:end'),
  /** { probe, phase, transport: 'tcp' | 'udp', address, port, ms, error? } */
  connect: channel('callprobe:net:connect'),
  /** { probe, phase, direction: 'sent' | 'received', bytes } */
  io: channel('callprobe:net:io'),
  /** { probe, phase, transport, how: 'fin' | 'rst' | 'error' | 'ws-close', detail? } */
  close: channel('callprobe:net:close'),
} as const;

/** One datagram (or stream chunk) of a flow, as the per-flow ledger lists it. */
export interface LedgerEntry {
  /** ms after the phase started. */
  atMs: number;
  dir: 'out' | 'in';
  bytes: number;
}

/** Enough for a whole RFC 8489 schedule (7 requests) or 30 s of reflector pings at 2 a second, each way. */
const MAX_LEDGER_ENTRIES = 64;

export interface TraceLabels {
  readonly probe: string;
  readonly phase: string;
}

export interface ConnectEvent {
  transport: 'tcp' | 'udp';
  address: string;
  port: number;
  /** How long the connect took (ms). */
  ms: number;
  /** The system error code when it failed. */
  error?: string;
}

export interface CloseEvent {
  transport: string;
  how: 'fin' | 'rst' | 'error' | 'ws-close';
  detail?: string;
}

/**
 * Counts the traffic of one socket, or of one direction of a conversation, into an evidence
 * object: bytes each way, the first bytes received (at most 64), the time to the first byte, and
 * with `datagrams` the datagrams each way. It is the one place that counts; every socket helper
 * (conversation, UDP channel, DNS) writes through one.
 */
export class TrafficCounter {
  private firstBytes = Buffer.alloc(0);
  private readonly ledger: LedgerEntry[] | null;

  constructor(
    private readonly into: Evidence,
    private readonly trace: PhaseTrace,
    private readonly datagrams: boolean,
    ledger: boolean,
  ) {
    into.bytesSent ??= 0;
    into.bytesReceived ??= 0;
    if (datagrams) {
      into.datagramsSent ??= 0;
      into.datagramsReceived ??= 0;
    }
    this.ledger = ledger ? ((into.ledger as LedgerEntry[] | undefined) ?? (into.ledger = [])) : null;
  }

  sent(bytes: number): void {
    this.into.bytesSent = (this.into.bytesSent ?? 0) + bytes;
    if (this.datagrams) this.into.datagramsSent = ((this.into.datagramsSent as number | undefined) ?? 0) + 1;
    this.note('out', bytes);
    this.trace.io('sent', bytes);
  }

  /** One line per datagram (or chunk) each way, with its time: "9 out, 0 in" is itself the finding. */
  private note(dir: 'out' | 'in', bytes: number): void {
    if (!this.ledger) return;
    if (this.ledger.length < MAX_LEDGER_ENTRIES) this.ledger.push({ atMs: this.trace.now(), dir, bytes });
    else this.into.ledgerDropped = ((this.into.ledgerDropped as number | undefined) ?? 0) + 1;
  }

  received(chunk: Uint8Array): void {
    const into = this.into;
    this.note('in', chunk.length);
    if (into.timeToFirstByteMs === undefined) into.timeToFirstByteMs = this.trace.now();
    into.bytesReceived = (into.bytesReceived ?? 0) + chunk.length;
    if (this.datagrams) {
      into.datagramsReceived = ((into.datagramsReceived as number | undefined) ?? 0) + 1;
      // A datagram stands alone: the first one is the evidence, not a stream's first 64 bytes.
      into.firstBytesHex ??= hexPrefix(chunk);
    } else if (this.firstBytes.length < MAX_EVIDENCE_BYTES) {
      this.firstBytes = Buffer.concat([this.firstBytes, chunk.subarray(0, MAX_EVIDENCE_BYTES - this.firstBytes.length)]);
      into.firstBytesHex = hexPrefix(this.firstBytes);
    }
    this.trace.io('received', chunk.length);
  }
}

/**
 * The runner's tracer for one phase: its clock (every offset in the phase's evidence counts from
 * the phase's start), its traffic counters, and the wire meters that count what a TLS handshake
 * or a WebSocket upgrade put on the TCP socket. The runner reads the meters one last time when the
 * phase ends, so a phase cut short by its timeout still reports its bytes.
 */
export class PhaseTrace {
  private readonly meters: Array<() => void> = [];
  private readonly startedAt = performance.now();

  constructor(
    readonly evidence: Evidence,
    readonly labels: TraceLabels,
  ) {}

  /** Milliseconds since the phase started, µs precision. */
  now(): number {
    return roundMs(performance.now() - this.startedAt);
  }

  /**
   * A counter writing into the phase's evidence, or into a part of it (e.g. a peer socket's own
   * counts); with `ledger`, every datagram each way is listed with its time (at most 64).
   */
  counter(opts: { datagrams?: boolean; into?: Evidence; ledger?: boolean } = {}): TrafficCounter {
    return new TrafficCounter(opts.into ?? this.evidence, this, opts.datagrams ?? false, opts.ledger ?? false);
  }

  /** Counts, from now on, what crosses a TCP socket in both directions (TLS records, HTTP upgrade). */
  wire(socket: Socket): void {
    const sentBefore = socket.bytesWritten;
    const readBefore = socket.bytesRead;
    const update = (): void => {
      this.evidence.bytesSent = socket.bytesWritten - sentBefore;
      this.evidence.bytesReceived = socket.bytesRead - readBefore;
    };
    update();
    this.meters.push(update);
  }

  /** Brings the wire meters up to date (the runner calls it as the phase ends). */
  settle(): void {
    for (const update of this.meters) update();
  }

  connected(event: ConnectEvent): void {
    if (TRACE_CHANNELS.connect.hasSubscribers) TRACE_CHANNELS.connect.publish({ ...this.labels, ...event });
  }

  closed(event: CloseEvent): void {
    if (TRACE_CHANNELS.close.hasSubscribers) TRACE_CHANNELS.close.publish({ ...this.labels, ...event });
  }

  io(direction: 'sent' | 'received', bytes: number): void {
    if (TRACE_CHANNELS.io.hasSubscribers) TRACE_CHANNELS.io.publish({ ...this.labels, direction, bytes });
  }
}
