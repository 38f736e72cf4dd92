/**
 * Per-source limits of the reflector: token buckets for packets and bytes, kept per source
 * address in a bounded table whose idle entries expire. A source is an IP address, not an
 * address and port, so that one host cannot multiply its allowance by opening more sockets.
 */

/** A token bucket (RFC 2697's single-rate idea): `ratePerSecond` tokens a second, at most `burst` saved. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    nowMs: number,
  ) {
    this.tokens = burst;
    this.last = nowMs;
  }

  /** Takes `n` tokens if there are that many; never goes negative (a refused packet costs nothing). */
  take(n: number, nowMs: number): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.last) / 1000) * this.ratePerSecond);
    this.last = nowMs;
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Gives back tokens taken for something that did not happen. */
  refund(n: number): void {
    this.tokens = Math.min(this.burst, this.tokens + n);
  }
}

export interface SourceLimits {
  readonly packetsPerSecond: number;
  readonly packetBurst: number;
  readonly bytesPerSecond: number;
  readonly byteBurst: number;
  readonly streamsPerMinute: number;
  /** Sources idle this long are forgotten (their buckets refill to full anyway). */
  readonly idleMs: number;
  /** The table's bound: packets from new sources are refused while it is full. */
  readonly maxSources: number;
}

export interface SourceState {
  readonly packets: TokenBucket;
  readonly bytes: TokenBucket;
  readonly streams: TokenBucket;
  lastSeenMs: number;
  /** Open TCP/TLS connections from this source. */
  connections: number;
}

export type Admission = 'ok' | 'rate_limited' | 'table_full';

export class SourceTable {
  private readonly sources = new Map<string, SourceState>();

  constructor(private readonly limits: SourceLimits) {}

  get size(): number {
    return this.sources.size;
  }

  /** The state of a source, created if there is room; null when the table is full. */
  get(source: string, nowMs: number): SourceState | null {
    let s = this.sources.get(source);
    if (!s) {
      if (this.sources.size >= this.limits.maxSources) {
        this.expire(nowMs);
        if (this.sources.size >= this.limits.maxSources) return null;
      }
      const l = this.limits;
      s = {
        packets: new TokenBucket(l.packetsPerSecond, l.packetBurst, nowMs),
        bytes: new TokenBucket(l.bytesPerSecond, l.byteBurst, nowMs),
        streams: new TokenBucket(l.streamsPerMinute / 60, Math.max(1, l.streamsPerMinute), nowMs),
        lastSeenMs: nowMs,
        connections: 0,
      };
      this.sources.set(source, s);
    }
    s.lastSeenMs = nowMs;
    return s;
  }

  /** May this source send a packet of `bytes` now? Takes from both buckets only if both allow. */
  admitPacket(source: string, bytes: number, nowMs: number): Admission {
    const s = this.get(source, nowMs);
    if (!s) return 'table_full';
    if (!s.bytes.take(bytes, nowMs)) return 'rate_limited';
    if (!s.packets.take(1, nowMs)) {
      s.bytes.refund(bytes); // the packet is not echoed: its bytes were not spent
      return 'rate_limited';
    }
    return 'ok';
  }

  /** Forgets sources idle longer than idleMs that hold no connection; returns how many. */
  expire(nowMs: number): number {
    let n = 0;
    for (const [key, s] of this.sources) {
      if (s.connections === 0 && nowMs - s.lastSeenMs > this.limits.idleMs) {
        this.sources.delete(key);
        n++;
      }
    }
    return n;
  }
}
