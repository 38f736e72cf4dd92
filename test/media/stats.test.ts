import { describe, expect, it } from 'vitest';
import { deterministicRng, opusLikeSize } from '../../src/protocol/media-packet.js';
import { mosFromR } from '../../src/protocol/emodel.js';
import {
  checkDegraded,
  classifyStream,
  computeStreamStats,
  detectCutoff,
  detectThrottle,
  emodelInputs,
  interarrivalJitter,
  percentile,
  type ReceivedPacket,
  type SentPacket,
} from '../../src/media/stats.js';

/** A 50 pps stream: packet i sent at i·20 ms, `size` bytes. */
function stream(count: number, size = 100): SentPacket[] {
  return Array.from({ length: count }, (_, seq) => ({ seq, sendTimeMs: seq * 20, size }));
}
/** Echoes of the packets `keep` accepts, each after `rttMs`. */
function echoes(sent: SentPacket[], keep: (s: SentPacket) => boolean, rttMs = 10): ReceivedPacket[] {
  return sent.filter(keep).map((s) => ({ seq: s.seq, sendTimeMs: s.sendTimeMs, recvTimeMs: s.sendTimeMs + rttMs, size: s.size }));
}
/** Random loss at `ratio`, reproducible. */
function randomLoss(ratio: number, seed: string): (s: SentPacket) => boolean {
  const rng = deterministicRng(seed);
  return () => Buffer.from(rng(4)).readUInt32BE(0) / 2 ** 32 >= ratio;
}

describe('interarrivalJitter (RFC 3550 §6.4.1, A.8)', () => {
  it('matches the estimator by hand', () => {
    // transits 10, 12, 10, 15 -> |D| = 2, 2, 5
    // J = 0 + (2 − 0)/16 = 0.125; 0.125 + (2 − 0.125)/16 = 0.2421875; + (5 − 0.2421875)/16 = 0.53955078125
    const arrivals = [
      { sendTimeMs: 0, recvTimeMs: 10 },
      { sendTimeMs: 20, recvTimeMs: 32 },
      { sendTimeMs: 40, recvTimeMs: 50 },
      { sendTimeMs: 60, recvTimeMs: 75 },
    ];
    expect(interarrivalJitter(arrivals)).toBe(0.53955078125);
    expect(computeStreamStats(stream(4), arrivals.map((a, seq) => ({ ...a, seq, size: 100 }))).jitterMs).toBe(0.53955078125);
  });
  it('is zero for a constant transit time and for one packet', () => {
    expect(interarrivalJitter([{ sendTimeMs: 0, recvTimeMs: 5 }])).toBe(0);
    expect(interarrivalJitter(stream(10).map((s) => ({ sendTimeMs: s.sendTimeMs, recvTimeMs: s.sendTimeMs + 7 })))).toBe(0);
  });
});

describe('percentile (nearest rank)', () => {
  it('picks the smallest sample with p % at or below it', () => {
    const v = Array.from({ length: 100 }, (_, i) => i + 1);
    expect([percentile(v, 50), percentile(v, 95), percentile(v, 99), percentile(v, 100), percentile(v, 0)]).toEqual([50, 95, 99, 100, 1]);
    expect(percentile([3, 7], 50)).toBe(3);
    expect(percentile([], 50)).toBeNaN();
  });
});

describe('computeStreamStats', () => {
  it('counts loss and burst runs in sequence order, and BurstR', () => {
    const sent = stream(20);
    const lostSeqs = new Set([3, 4, 5, 10, 17]);
    const s = computeStreamStats(sent, echoes(sent, (p) => !lostSeqs.has(p.seq)));
    expect(s).toMatchObject({ sent: 20, received: 15, lost: 5, lossRatio: 0.25, duplicates: 0, unexpected: 0, reordered: 0, bytesSent: 2000, bytesReceived: 1500 });
    expect(s.sizeBytes).toEqual({ min: 100, mean: 100, max: 100, rms: 100 });
    expect(s.bursts).toEqual({ count: 3, max: 3, mean: 5 / 3, histogram: [{ length: 1, count: 2 }, { length: 3, count: 1 }] });
    // mean burst 5/3 over the random-loss expectation 1/(1 − 0.25)
    expect(s.burstRatio).toBeCloseTo((5 / 3) * 0.75, 12);
  });

  it('counts duplicates, unexpected sequence numbers and reordering (RFC 4737 §3.3)', () => {
    const sent = stream(4);
    const at = (seq: number, recvTimeMs: number): ReceivedPacket => ({ seq, sendTimeMs: seq * 20, recvTimeMs, size: 100 });
    const s = computeStreamStats(sent, [at(0, 5), at(2, 45), at(1, 46), at(3, 65), at(3, 66), at(99, 70)]);
    expect(s).toMatchObject({ received: 4, lost: 0, duplicates: 1, unexpected: 1, reordered: 1, bytesReceived: 400 });
  });

  it('orders arrivals by receive time whatever order they are given in', () => {
    const sent = stream(3);
    const given: ReceivedPacket[] = [
      { seq: 2, sendTimeMs: 40, recvTimeMs: 52, size: 100 },
      { seq: 0, sendTimeMs: 0, recvTimeMs: 10, size: 100 },
      { seq: 1, sendTimeMs: 20, recvTimeMs: 30, size: 100 },
    ];
    expect(computeStreamStats(sent, given)).toMatchObject({ reordered: 0, jitterMs: 0.125 });
  });

  it('gives RTT percentiles of the first copies', () => {
    const sent = stream(100);
    const received = sent.map((s) => ({ seq: s.seq, sendTimeMs: s.sendTimeMs, recvTimeMs: s.sendTimeMs + s.seq + 1, size: s.size }));
    expect(computeStreamStats(sent, received).rttMs).toEqual({ min: 1, p50: 50, p95: 95, p99: 99, max: 100, mean: 50.5 });
    expect(computeStreamStats(sent, []).rttMs).toBeNull();
  });

  it('bins sent and delivered packets per second', () => {
    const sent = stream(150); // 3 s
    const s = computeStreamStats(sent, echoes(sent, (p) => p.seq % 2 === 0 || p.seq < 50));
    expect(s.timeline.binMs).toBe(1000);
    expect(s.timeline.bins).toEqual([
      { startMs: 0, sentPackets: 50, sentBytes: 5000, receivedPackets: 50, receivedBytes: 5000 },
      { startMs: 1000, sentPackets: 50, sentBytes: 5000, receivedPackets: 25, receivedBytes: 2500 },
      { startMs: 2000, sentPackets: 50, sentBytes: 5000, receivedPackets: 25, receivedBytes: 2500 },
    ]);
    expect(s.durationMs).toBe(2980);
  });

  it('widens bins to stay within maxBins', () => {
    const sent = stream(1000); // 20 s
    const s = computeStreamStats(sent, echoes(sent, () => true), { maxBins: 5 });
    expect(s.timeline.binMs).toBe(4000);
    expect(s.timeline.bins.length).toBe(5);
    expect(s.timeline.bins.map((b) => b.sentPackets)).toEqual([200, 200, 200, 200, 200]);
    expect(computeStreamStats(sent, [], { maxBins: 120 }).timeline.bins.length).toBe(20);
  });

  it('reports the last packet received: index, bytes, time', () => {
    const sent = stream(1000);
    const s = computeStreamStats(sent, echoes(sent, (p) => p.seq < 200));
    expect(s.lastReceived).toEqual({ seq: 199, sentIndex: 200, receivedCount: 200, bytesSent: 20_000, bytesReceived: 20_000, sendOffsetMs: 3980, recvOffsetMs: 3990 });
    expect(s.lastSendOffsetMs).toBe(19_980);
    expect(computeStreamStats(sent, []).lastReceived).toBeNull();
  });

  it('summarises the sizes sent', () => {
    const sent = [60, 80, 160].map((size, seq) => ({ seq, sendTimeMs: seq * 20, size }));
    expect(computeStreamStats(sent, []).sizeBytes).toEqual({ min: 60, mean: 100, max: 160, rms: Math.sqrt((3600 + 6400 + 25600) / 3) });
  });

  it('handles an empty stream', () => {
    const s = computeStreamStats([], []);
    expect(s).toMatchObject({ sent: 0, received: 0, lossRatio: 0, durationMs: 0, lastReceived: null, rttMs: null, sizeBytes: null });
    expect(s.timeline.bins).toEqual([]);
  });
});

describe('detectCutoff', () => {
  it('a censor that stops a flow after exactly 200 packets: cut-off with N = 200', () => {
    const sent = stream(1000);
    const c = detectCutoff(computeStreamStats(sent, echoes(sent, (p) => p.seq < 200)));
    expect(c).toEqual({
      cutoff: true,
      afterPackets: 200,
      receivedPackets: 200,
      afterBytesSent: 20_000,
      afterBytesReceived: 20_000,
      afterMs: 3980,
      lastRecvMs: 3990,
      tailPackets: 800,
      tailMs: 16_000,
      lossBefore: 0,
    });
  });

  it('no cut-off when everything came back, or the silence is shorter than the grace', () => {
    const sent = stream(1000);
    expect(detectCutoff(computeStreamStats(sent, echoes(sent, () => true)))?.cutoff).toBe(false);
    expect(detectCutoff(computeStreamStats(sent, echoes(sent, (p) => p.seq < 976)))?.cutoff).toBe(false); // 24 packets
    expect(detectCutoff(computeStreamStats(sent, echoes(sent, (p) => p.seq < 975)))?.cutoff).toBe(true); // 25 packets over 500 ms
  });

  it('no cut-off when heavy random loss could explain the silence', () => {
    const sent = stream(1000);
    // ~90 % loss before, then 39 silent packets: 0.899^39 ≈ 0.016 > 1e-6
    const keep = (p: SentPacket) => p.seq < 970 && p.seq % 10 === 0;
    const c = detectCutoff(computeStreamStats(sent, echoes(sent, keep)));
    expect(c?.tailPackets).toBe(39);
    expect(c?.lossBefore).toBeCloseTo(0.9, 2);
    expect(c?.cutoff).toBe(false);
  });

  it('is null when nothing came back (that is media_no_packets)', () => {
    expect(detectCutoff(computeStreamStats(stream(10), []))).toBeNull();
  });
});

describe('detectThrottle', () => {
  it('a rate cap at half the stream rate: delivered 0.5, steady per second', () => {
    const sent = stream(1000);
    const t = detectThrottle(computeStreamStats(sent, echoes(sent, (p) => p.seq % 2 === 0)));
    expect(t).toMatchObject({ throttled: true, bins: 18, deliveredRatio: 0.5, dispersion: 0, sentRateBps: 40_000, deliveredRateBps: 20_000 });
  });

  it('a byte token bucket with Opus-like sizes: throttled although it favours small packets', () => {
    const rng = deterministicRng('bucket');
    const sent = Array.from({ length: 1000 }, (_, seq) => ({ seq, sendTimeMs: seq * 20, size: 12 + opusLikeSize(rng) }));
    // 3000 bytes/s into a 600-byte bucket, about half of what the stream sends
    let tokens = 600;
    let last = 0;
    const passed = new Set<number>();
    for (const s of sent) {
      tokens = Math.min(600, tokens + ((s.sendTimeMs - last) * 3000) / 1000);
      last = s.sendTimeMs;
      if (tokens >= s.size) {
        tokens -= s.size;
        passed.add(s.seq);
      }
    }
    const stats = computeStreamStats(sent, echoes(sent, (p) => passed.has(p.seq)));
    const t = detectThrottle(stats);
    expect(t?.throttled).toBe(true);
    expect(t?.deliveredRatio).toBeCloseTo(0.49, 1);
    expect(t?.dispersion).toBeLessThan(0.25);
    expect(classifyStream(stats).failure).toBe('media_throttled');
  });

  it('a token bucket with a realistic burst (3 kB/s, 3000 bytes saved): the burst drains, then the same amount each second: throttled', () => {
    const rng = deterministicRng('burst');
    const sent = Array.from({ length: 500 }, (_, seq) => ({ seq, sendTimeMs: seq * 20, size: 12 + opusLikeSize(rng) }));
    // As nftables' `limit rate over 3 kbytes/second burst 3000 bytes` counts: IP bytes (28 more a
    // datagram), into a bucket of one second's rate plus the burst (nft_limit_init: rate + burst).
    const capacity = 3072 + 3000;
    let tokens = capacity;
    let last = 0;
    const passed = new Set<number>();
    for (const s of sent) {
      tokens = Math.min(capacity, tokens + ((s.sendTimeMs - last) * 3072) / 1000);
      last = s.sendTimeMs;
      if (tokens >= s.size + 28) {
        tokens -= s.size + 28;
        passed.add(s.seq);
      }
    }
    const stats = computeStreamStats(sent, echoes(sent, (p) => passed.has(p.seq)));
    const t = detectThrottle(stats)!;
    expect(t.throttled).toBe(true);
    // The first loss is in the second second (the burst and the first second's tokens lasted that long): steady from 2 s on.
    expect(stats.firstLoss!.sendOffsetMs).toBeGreaterThanOrEqual(1000);
    expect(t.fromMs).toBe(2000);
    expect(t.burstBytes).toBe(stats.firstLoss!.bytesReceivedBefore);
    expect(t.dispersion).toBeLessThan(0.25);
    expect(classifyStream(stats).failure).toBe('media_throttled');
  });

  it('random loss of the same average is not a throttle (binomial dispersion)', () => {
    const sent = stream(1000);
    const t = detectThrottle(computeStreamStats(sent, echoes(sent, randomLoss(0.5, 'half'))));
    expect(t?.throttled).toBe(false);
    expect(t?.deliveredRatio).toBeGreaterThan(0.4);
    expect(t?.deliveredRatio).toBeLessThan(0.6);
    expect(t?.dispersion).toBeGreaterThan(0.25);
  });

  it('5 % random loss and a clean path are not throttled', () => {
    const sent = stream(1000);
    expect(detectThrottle(computeStreamStats(sent, echoes(sent, randomLoss(0.05, 'five'))))?.throttled).toBe(false);
    expect(detectThrottle(computeStreamStats(sent, echoes(sent, () => true)))?.throttled).toBe(false);
  });

  it('has too few steady bins to judge a 2 s stream', () => {
    const sent = stream(100);
    expect(detectThrottle(computeStreamStats(sent, echoes(sent, () => true)))).toBeNull();
  });
});

describe('checkDegraded and classifyStream', () => {
  it('a clean path: no failure, MOS above 4.2', () => {
    const sent = stream(1000);
    const c = classifyStream(computeStreamStats(sent, echoes(sent, () => true, 1)));
    expect(c.failure).toBeNull();
    expect(c.quality?.mos).toBeCloseTo(mosFromR(93.2), 12);
    expect(c.quality?.mos).toBeGreaterThan(4.2);
    expect(c.degraded).toEqual({ degraded: false, reasons: [] });
  });

  it('nothing came back: media_no_packets', () => {
    const c = classifyStream(computeStreamStats(stream(1000), []));
    expect(c.failure).toBe('media_no_packets');
    expect(c.quality).toBeNull();
  });

  it('cut after 200 packets: stream_cutoff', () => {
    const sent = stream(1000);
    const c = classifyStream(computeStreamStats(sent, echoes(sent, (p) => p.seq < 200)));
    expect(c.failure).toBe('stream_cutoff');
    expect(c.cutoff?.afterPackets).toBe(200);
  });

  it('capped at half rate: media_throttled', () => {
    const sent = stream(1000);
    expect(classifyStream(computeStreamStats(sent, echoes(sent, (p) => p.seq % 2 === 0))).failure).toBe('media_throttled');
  });

  it('5 % random loss: media_degraded for loss (threshold 3 %)', () => {
    const sent = stream(1000);
    const c = classifyStream(computeStreamStats(sent, echoes(sent, randomLoss(0.05, 'five'))));
    expect(c.failure).toBe('media_degraded');
    expect(c.degraded.reasons).toContain('loss');
  });

  it('each threshold names itself', () => {
    const sent = stream(100);
    const lost = new Set([10, 11, 12, 13, 14, 15]);
    const s = computeStreamStats(sent, echoes(sent, (p) => !lost.has(p.seq)));
    expect(checkDegraded(s, null)).toEqual({ degraded: true, reasons: ['loss', 'burst'] });
    expect(checkDegraded(s, null, { maxLossRatio: 0.1, maxBurstPackets: 6 })).toEqual({ degraded: false, reasons: [] });
    const jittery = computeStreamStats(
      sent,
      sent.map((p) => ({ seq: p.seq, sendTimeMs: p.sendTimeMs, recvTimeMs: p.sendTimeMs + (p.seq % 2 === 0 ? 5 : 205), size: p.size })),
    );
    expect(checkDegraded(jittery, null).reasons).toEqual(['jitter']);
    expect(checkDegraded(jittery, { r: 60, mos: mosFromR(60), idd: 0, ieEff: 0, codec: 'x' }).reasons).toEqual(['jitter', 'mos']);
  });

  it('feeds the E-model half the p99 RTT plus one frame', () => {
    const sent = stream(100);
    const s = computeStreamStats(sent, echoes(sent, () => true, 40));
    expect(emodelInputs(s)).toEqual({ oneWayDelayMs: 40, lossRatio: 0, burstRatio: 1 });
    expect(emodelInputs(computeStreamStats(sent, []))).toBeNull();
  });
});
