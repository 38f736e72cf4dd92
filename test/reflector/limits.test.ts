import { describe, expect, it } from 'vitest';
import { ConnectionLimits, SourceTable, TokenBucket, sourceKey } from '../../src/reflector/limits.js';

describe('TokenBucket', () => {
  it('starts full, refills at the rate, never beyond the burst', () => {
    const b = new TokenBucket(10, 3, 0);
    expect([b.take(1, 0), b.take(1, 0), b.take(1, 0), b.take(1, 0)]).toEqual([true, true, true, false]);
    expect(b.take(1, 99)).toBe(false); // 0.99 tokens
    expect(b.take(1, 100)).toBe(true); // 1 token after 100 ms at 10/s
    expect([b.take(1, 10_000), b.take(1, 10_000), b.take(1, 10_000), b.take(1, 10_000)]).toEqual([true, true, true, false]);
  });

  it('a refused take costs nothing; a refund gives tokens back up to the burst', () => {
    const b = new TokenBucket(1, 100, 0);
    expect(b.take(150, 0)).toBe(false);
    expect(b.take(100, 0)).toBe(true);
    b.refund(60);
    b.refund(60);
    expect(b.take(100, 0)).toBe(true);
    expect(b.take(1, 0)).toBe(false);
  });
});

const LIMITS = {
  packetsPerSecond: 50,
  packetBurst: 2,
  bytesPerSecond: 1000,
  byteBurst: 250,
  streamsPerMinute: 2,
  idleMs: 1000,
  maxSources: 2,
  unauthenticatedPacketsPerSecond: 1,
  unauthenticatedBurst: 3,
};
const yes = () => true;
const no = () => false;

describe('sourceKey', () => {
  it('is the IPv4 address (IPv4-mapped IPv6 too), or the IPv6 /64', () => {
    expect(sourceKey('198.18.1.2')).toBe('198.18.1.2');
    expect(sourceKey('::ffff:198.18.1.2')).toBe('198.18.1.2');
    expect(sourceKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:DB8:0001:0002:ffff::1')).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1::1')).toBe('2001:db8:1:0::/64');
    expect(sourceKey('2001:db8::')).toBe('2001:db8:0:0::/64');
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey('::1.2.3.4')).toBe('0:0:0:0::/64');
    expect(sourceKey('fe80:0:0:7::1.2.3.4')).toBe('fe80:0:0:7::/64');
  });
});

describe('SourceTable', () => {
  it('admits packets from a known source while both its packet and byte buckets allow', () => {
    const t = new SourceTable(LIMITS, undefined, 0);
    expect(t.admit('198.18.1.2', 100, 0, yes)).toBe('ok');
    expect(t.admit('198.18.1.2', 100, 0, yes)).toBe('ok');
    expect(t.admit('198.18.1.2', 10, 0, yes)).toBe('rate_limited'); // packets: burst 2
    expect(t.admit('198.18.1.3', 200, 0, yes)).toBe('ok'); // another source, its own buckets
    // bytes: 250 − 200 + 20 ms × 1000/s = 70 left
    expect(t.admit('198.18.1.3', 71, 20, yes)).toBe('rate_limited');
    expect(t.admit('198.18.1.3', 70, 20, yes)).toBe('ok');
  });

  it('creates no state for unauthenticated packets, and checks tags only as the one global bucket allows', () => {
    const t = new SourceTable({ ...LIMITS, maxSources: 10 }, undefined, 0);
    let checked = 0;
    const forged = () => (checked++, false);
    const results = new Map<string, number>();
    // 100 000 spoofed sources (no key needed): 3 tags checked (the burst), the rest refused unchecked.
    for (let i = 0; i < 100_000; i++) {
      const r = t.admit(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 100, 0, forged);
      results.set(r, (results.get(r) ?? 0) + 1);
    }
    expect(Object.fromEntries(results)).toEqual({ bad_tag: 3, unauthenticated_limited: 99_997 });
    expect(checked).toBe(3);
    expect(t.size).toBe(0);
    // A real probe arriving during the flood waits for the bucket's next token (1/s here)...
    expect(t.admit('198.18.1.2', 100, 500, yes)).toBe('unauthenticated_limited');
    expect(t.admit('198.18.1.2', 100, 1000, yes)).toBe('ok');
    expect(t.size).toBe(1);
    // ...and, once known, pays only from its own buckets: the flood cannot lock it out.
    for (let i = 0; i < 1000; i++) t.admit(`10.0.${i >> 8}.${i & 255}`, 100, 1001, forged);
    expect(t.admit('198.18.1.2', 100, 1001, yes)).toBe('ok');
  });

  it('checks the tags of a known source only after its buckets paid, never through the global bucket', () => {
    const t = new SourceTable({ ...LIMITS, unauthenticatedBurst: 1, unauthenticatedPacketsPerSecond: 0.001 }, undefined, 0);
    expect(t.admit('a', 10, 0, yes)).toBe('ok'); // the one global token
    let checked = 0;
    const forged = () => (checked++, false);
    expect(t.admit('a', 10, 0, forged)).toBe('bad_tag'); // its second packet: its own bucket
    expect(t.admit('a', 10, 0, forged)).toBe('rate_limited'); // burst 2 used: not checked
    expect(checked).toBe(1);
    expect(t.admit('b', 10, 0, yes)).toBe('unauthenticated_limited');
  });

  it('gives back the bytes of a packet the packet bucket refused', () => {
    const t = new SourceTable({ ...LIMITS, packetBurst: 1, packetsPerSecond: 0.001 }, undefined, 0);
    expect(t.admit('a', 100, 0, yes)).toBe('ok');
    expect(t.admit('a', 100, 0, yes)).toBe('rate_limited');
    expect(t.admit('a', 100, 0, yes)).toBe('rate_limited');
    // 150 bytes left: had the refused packets kept their bytes, 100 would not fit.
    expect(t.touch('a', 0)!.bytes.take(150, 0)).toBe(true);
  });

  it('when full, forgets the least recently used source for a new authentic one', () => {
    const evicted: string[] = [];
    const t = new SourceTable({ ...LIMITS, unauthenticatedBurst: 10 }, (s) => evicted.push(s), 0);
    expect(t.admit('a', 1, 0, yes)).toBe('ok');
    expect(t.admit('b', 1, 100, yes)).toBe('ok');
    expect(t.admit('a', 1, 200, yes)).toBe('ok'); // a is now the more recently used
    expect(t.admit('c', 1, 300, yes)).toBe('ok');
    expect(evicted).toEqual(['b']);
    expect(t.size).toBe(2);
    expect(t.touch('b', 300)).toBeUndefined();
    expect(t.touch('a', 300)).toBeDefined();
    // An idle source goes first by expiry, which is no eviction.
    expect(t.admit('d', 1, 1400, yes)).toBe('ok'); // a and c idle > 1000 ms
    expect(evicted).toEqual(['b']);
  });

  it('expires idle sources, least recently used first', () => {
    const t = new SourceTable({ ...LIMITS, maxSources: 5, unauthenticatedBurst: 10 }, undefined, 0);
    t.admit('a', 1, 0, yes);
    t.admit('b', 1, 0, yes);
    t.admit('c', 1, 800, yes);
    t.touch('a', 900);
    expect(t.expire(1001)).toBe(1); // b only
    expect(t.size).toBe(2);
    expect(t.expire(1901)).toBe(2);
    expect(t.size).toBe(0);
  });
});

describe('ConnectionLimits', () => {
  it('counts connections per source and in all; a release counts once; an idle source takes no room', () => {
    const c = new ConnectionLimits(3, 2);
    const a1 = c.acquire('a')!;
    const a2 = c.acquire('a')!;
    expect(c.acquire('a')).toBeNull(); // per source
    const b1 = c.acquire('b')!;
    expect(c.acquire('c')).toBeNull(); // in all
    a1();
    a1();
    expect(c.open).toBe(2);
    const a3 = c.acquire('a');
    expect(a3).not.toBeNull();
    for (const r of [a2, a3!, b1]) r();
    expect(c.open).toBe(0);
    expect(c.acquire('c')).not.toBeNull();
  });
});
