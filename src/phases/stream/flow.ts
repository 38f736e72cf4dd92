import type { Socket } from 'node:net';

/**
 * The connection as a censor counts it: TCP payload bytes each way from the connection's first
 * byte (a TLS handshake and the stream request included: a per-flow counter starts at the SYN),
 * read off the TCP socket itself, under TLS too. (A TLSSocket's own bytesRead and bytesWritten
 * count decrypted bytes: a download cut inside a 16 KiB TLS record shows there as the last whole
 * record, test/net/tls-bytes.test.ts.) `writtenBytes` is what callprobe handed the socket; on a
 * path that stopped taking data it includes bytes that never left.
 */
export interface FlowCount {
  readBytes: number;
  writtenBytes: number;
}

/**
 * Watches the flow's read count for movement and when it last moved (ms from the phase start).
 * Over plain TCP every read is a 'data' event, so sampling on each one is exact; under TLS the
 * bytes of a record not yet complete reach the TCP socket without an event, so the phase also
 * samples on a tick, and the time of the last byte is then known to within that tick.
 */
export class FlowMeter {
  readBytes: number;
  /** When the read count last grew; starts at the meter's creation (the request). */
  lastReadAtMs: number;

  constructor(
    private readonly tcp: Socket,
    private readonly now: () => number,
  ) {
    this.readBytes = tcp.bytesRead;
    this.lastReadAtMs = now();
  }

  /** Reads the count; true if it grew since the last look. */
  sample(): boolean {
    const read = this.tcp.bytesRead;
    if (read === this.readBytes) return false;
    this.readBytes = read;
    this.lastReadAtMs = this.now();
    return true;
  }

  count(): FlowCount {
    return { readBytes: this.tcp.bytesRead, writtenBytes: this.tcp.bytesWritten };
  }
}

/**
 * Where the upload's bytes sit in the flow's TCP payload, so that "the reflector acknowledged X
 * bytes" becomes "the flow's first Y bytes of TCP payload arrived", the figure a censor's counter
 * compares. Over TCP that is the payload written before the upload plus X. Under TLS each write
 * becomes a record with overhead of its own, and the reflector can only have read whole records,
 * so X is always the end of some write: the TCP count when that write had gone onto the socket.
 */
export class UploadLedger {
  private readonly before: number;
  /** Under TLS: upload bytes written so far -> the flow's TCP payload written at that point. */
  private readonly atEndOf: Map<number, number> | null;

  constructor(
    private readonly tcp: Socket,
    encrypted: boolean,
  ) {
    this.before = tcp.bytesWritten;
    this.atEndOf = encrypted ? new Map() : null;
  }

  /** The write that brought the upload to `total` bytes has gone onto the TCP socket. */
  written(total: number): void {
    this.atEndOf?.set(total, this.tcp.bytesWritten);
  }

  /** The flow's TCP payload offset at the end of the first `uploaded` bytes, or null if unknown. */
  tcpOffsetOf(uploaded: number): number | null {
    if (this.atEndOf === null) return this.before + uploaded;
    if (uploaded === 0) return this.before;
    return this.atEndOf.get(uploaded) ?? null;
  }
}
