import { describe, expect, it } from 'vitest';
import { SourceTable, TokenBucket } from '../../src/reflector/limits.js';

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

const LIMITS = { packetsPerSecond: 50, packetBurst: 2, bytesPerSecond: 1000, byteBurst: 250, streamsPerMinute: 2, idleMs: 1000, maxSources: 2 };

describe('SourceTable', () => {
  it('admits packets while both the packet and the byte bucket allow', () => {
    const t = new SourceTable(LIMITS);
    expect(t.admitPacket('198.18.1.2', 100, 0)).toBe('ok');
    expect(t.admitPacket('198.18.1.2', 100, 0)).toBe('ok');
    expect(t.admitPacket('198.18.1.2', 10, 0)).toBe('rate_limited'); // packets: burst 2
    expect(t.admitPacket('198.18.1.3', 200, 0)).toBe('ok'); // another source, its own buckets
    // bytes: 250 − 200 + 20 ms × 1000/s = 70 left
    expect(t.admitPacket('198.18.1.3', 71, 20)).toBe('rate_limited');
    expect(t.admitPacket('198.18.1.3', 70, 20)).toBe('ok');
  });

  it('gives back the bytes of a packet the packet bucket refused', () => {
    const t = new SourceTable({ ...LIMITS, packetBurst: 1, packetsPerSecond: 0.001 });
    expect(t.admitPacket('a', 100, 0)).toBe('ok');
    expect(t.admitPacket('a', 100, 0)).toBe('rate_limited');
    expect(t.admitPacket('a', 100, 0)).toBe('rate_limited');
    // 150 bytes left: had the refused packets kept their bytes, 100 would not fit.
    const s = t.get('a', 0)!;
    expect(s.bytes.take(150, 0)).toBe(true);
  });

  it('is bounded: a new source is refused while full, admitted once an old one expired', () => {
    const t = new SourceTable(LIMITS);
    expect(t.admitPacket('a', 1, 0)).toBe('ok');
    expect(t.admitPacket('b', 1, 500)).toBe('ok');
    expect(t.admitPacket('c', 1, 900)).toBe('table_full');
    expect(t.admitPacket('c', 1, 1001)).toBe('ok'); // 'a' idle 1001 ms > 1000: forgotten
    expect(t.size).toBe(2);
  });

  it('expires idle sources, but never one that holds a connection', () => {
    const t = new SourceTable(LIMITS);
    t.get('a', 0)!.connections = 1;
    t.get('b', 0);
    expect(t.expire(5000)).toBe(1);
    expect(t.size).toBe(1);
    t.get('a', 5000)!.connections = 0;
    expect(t.expire(6001)).toBe(1);
    expect(t.size).toBe(0);
  });
});
