/**
 * The reflector's limits. Two rules keep a flood without the key from costing anything that
 * real probes need:
 *
 * - Per-source state exists only for sources that sent something authentic. A packet from an
 *   unknown source first takes a token from ONE global bucket for unauthenticated traffic, and
 *   only then is its tag checked (an HMAC), so spoofed floods cost at most that bucket's rate in
 *   hashing and create no state at all. A source known to be authentic pays from its own buckets
 *   before its tags are checked, so its hashing is bounded too.
 * - The table of sources is bounded; when it is full, the least recently used source is forgotten
 *   (it only loses its token buckets, which refill to full anyway when it comes back) instead of
 *   new sources being refused.
 *
 * A source is an IPv4 address or an IPv6 /64 (`sourceKey`): one host must not multiply its
 * allowance by opening more sockets, nor by using more of the addresses of its /64 (RFC 4291
 * §2.5.1 and RFC 7421: a /64 is one link, routinely one subscriber).
 */
import { isIP } from 'node:net';
import { normalizeAddress } from '../net/cidr.js';
import { IdleMap } from './idle-map.js';

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

/**
 * The key a source's limits are kept under: the IPv4 address (IPv4-mapped IPv6 counts as IPv4),
 * or the /64 an IPv6 address belongs to, written `a:b:c:d::/64`.
 */
export function sourceKey(address: string): string {
  const norm = normalizeAddress(address);
  if (norm === null) return address;
  if (isIP(norm) === 4) return norm;
  // Expand "::" to get the first four of the eight 16-bit groups.
  const [head = '', tail] = norm.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail ? tail.split(':') : [];
  // A dotted IPv4 tail (::a.b.c.d) is two groups wide; it never reaches the first four.
  const width = h.length + t.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - width).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

export interface SourceLimits {
  readonly packetsPerSecond: number;
  readonly packetBurst: number;
  readonly bytesPerSecond: number;
  readonly byteBurst: number;
  readonly streamsPerMinute: number;
  /** Sources idle this long are forgotten (their buckets refill to full anyway). */
  readonly idleMs: number;
  /** The table's bound: when full, the least recently used source is forgotten. */
  readonly maxSources: number;
  /** The one bucket every packet from an unknown source draws from before its tag is checked. */
  readonly unauthenticatedPacketsPerSecond: number;
  readonly unauthenticatedBurst: number;
}

export interface SourceState {
  readonly packets: TokenBucket;
  readonly bytes: TokenBucket;
  readonly streams: TokenBucket;
  lastSeenMs: number;
}

/**
 * What happened to a packet at the gate: `ok` (authentic and within its source's limits),
 * `rate_limited` (its known source is over its limits; not checked), `unauthenticated_limited`
 * (unknown source and the global bucket is empty; not checked), `bad_tag` (checked, not
 * authentic).
 */
export type Admission = 'ok' | 'rate_limited' | 'unauthenticated_limited' | 'bad_tag';

export class SourceTable {
  private readonly sources: IdleMap<SourceState>;
  private readonly unauthenticated: TokenBucket;

  /** `onEvict` hears of each source forgotten to make room (not for idling): the table is too small or under attack. */
  constructor(
    private readonly limits: SourceLimits,
    onEvict: (source: string) => void = () => {},
    nowMs = performance.now(),
  ) {
    this.sources = new IdleMap(limits.idleMs, limits.maxSources, onEvict);
    this.unauthenticated = new TokenBucket(limits.unauthenticatedPacketsPerSecond, limits.unauthenticatedBurst, nowMs);
  }

  get size(): number {
    return this.sources.size;
  }

  /**
   * Decides on one packet of `bytes` from `source` (a `sourceKey`). `authentic` runs the HMAC; it is
   * called only after a bucket paid for it, and at most once. An authentic packet from an unknown
   * source creates its state (forgetting the least recently used source if the table is full).
   */
  admit(source: string, bytes: number, nowMs: number, authentic: () => boolean): Admission {
    const known = this.touch(source, nowMs);
    if (known) {
      if (!charge(known, bytes, nowMs)) return 'rate_limited';
      return authentic() ? 'ok' : 'bad_tag';
    }
    if (!this.unauthenticated.take(1, nowMs)) return 'unauthenticated_limited';
    if (!authentic()) return 'bad_tag';
    return charge(this.create(source, nowMs), bytes, nowMs) ? 'ok' : 'rate_limited';
  }

  /** The state of a known source (marking it used), or undefined. */
  touch(source: string, nowMs: number): SourceState | undefined {
    return this.sources.touch(source, nowMs);
  }

  /** Forgets sources idle longer than idleMs; returns how many. */
  expire(nowMs: number): number {
    return this.sources.expire(nowMs);
  }

  private create(source: string, nowMs: number): SourceState {
    const l = this.limits;
    return this.sources.add(
      source,
      {
        packets: new TokenBucket(l.packetsPerSecond, l.packetBurst, nowMs),
        bytes: new TokenBucket(l.bytesPerSecond, l.byteBurst, nowMs),
        streams: new TokenBucket(l.streamsPerMinute / 60, Math.max(1, l.streamsPerMinute), nowMs),
        lastSeenMs: nowMs,
      },
      nowMs,
    );
  }
}

/** Takes one packet and its bytes from a source's buckets, from both or from neither. */
function charge(s: SourceState, bytes: number, nowMs: number): boolean {
  if (!s.bytes.take(bytes, nowMs)) return false;
  if (!s.packets.take(1, nowMs)) {
    s.bytes.refund(bytes); // the packet is not echoed: its bytes were not spent
    return false;
  }
  return true;
}

/**
 * Open TCP/TLS connections, in all and per source, counted from the raw TCP connection (before
 * any TLS handshake), so handshakes are bounded like everything else. A source appears here only
 * while it holds a connection: the map is bounded by `max`.
 */
export class ConnectionLimits {
  private readonly perSource = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly max: number,
    private readonly maxPerSource: number,
  ) {}

  get open(): number {
    return this.total;
  }

  /** Counts a new connection from `source` and returns its release, or null if over a limit. */
  acquire(source: string): (() => void) | null {
    const n = this.perSource.get(source) ?? 0;
    if (this.total >= this.max || n >= this.maxPerSource) return null;
    this.perSource.set(source, n + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.perSource.get(source) ?? 1) - 1;
      if (left === 0) this.perSource.delete(source);
      else this.perSource.set(source, left);
    };
  }
}
