import { describe, expect, it } from 'vitest';
import { cutDirection, perDirection, type DirectionInput } from '../../src/media/direction.js';

const SIZE = 100;
const sent = (n: number) => Array.from({ length: n }, (_, seq) => ({ seq, size: SIZE }));
/** Echoes of these sequence numbers, each carrying the reflector's count at its echo (in order, no uplink loss). */
const echoed = (seqs: number[], countOf = (seq: number) => seq + 1) => seqs.map((seq) => ({ seq, reflector: { packets: countOf(seq), bytes: countOf(seq) * SIZE } }));
const input = (o: Partial<DirectionInput>): DirectionInput => ({
  sent: sent(100),
  received: [],
  echoes: { packets: 0, bytes: 0 },
  report: null,
  rttP50Ms: 10,
  frameMs: 20,
  ...o,
});
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('perDirection', () => {
  it('from the report: uplink is what the reflector received of all sent, downlink what came back of what it echoed', () => {
    const p = perDirection(input({ echoes: { packets: 12, bytes: 1200 }, report: { packets: 13, bytes: 1300, highestSeq: 12, echoed: 13 } }));
    expect(p).toEqual({
      source: 'report',
      uplink: { packets: 13, bytes: 1300, lossRatio: expect.closeTo(0.87, 12) },
      downlink: { packets: 12, bytes: 1200, lossRatio: expect.closeTo(1 / 13, 12) },
    });
  });

  it('from the echoes alone: the reflector\'s view up to the last echo back', () => {
    // Every second packet lost on the way up: the reflector had 10 of the first 20.
    const rec = echoed(range(0, 9).map((i) => 2 * i), (seq) => seq / 2 + 1);
    const p = perDirection(input({ received: rec, echoes: { packets: 10, bytes: 1000 } }));
    expect(p).toEqual({ source: 'echoes', uplink: { packets: 10, bytes: 1000, lossRatio: 1 - 10 / 19 }, downlink: { packets: 10, bytes: 1000, lossRatio: 0 } });
    expect(perDirection(input({}))).toBeNull();
  });
});

describe('cutDirection', () => {
  it('uplink: the reflector\'s last packet came back (nothing it got went unanswered)', () => {
    const d = cutDirection(input({ received: echoed(range(0, 12)), report: { packets: 13, bytes: 1300, highestSeq: 12, echoed: 13 } }));
    expect(d).toMatchObject({ direction: 'uplink', reflectorHighestSeq: 12, lastEchoedSeq: 12, receivedAfterLastEcho: 0 });
    expect(cutDirection(input({ report: { packets: 0, bytes: 0, highestSeq: null, echoed: 0 } }))).toMatchObject({
      direction: 'uplink',
      reason: 'the reflector received nothing of this flow: our packets did not reach it',
    });
  });

  it('downlink: the reflector heard us to the end while its echoes stopped', () => {
    const d = cutDirection(input({ received: echoed(range(0, 11)), report: { packets: 100, bytes: 10_000, highestSeq: 99, echoed: 100 } }));
    expect(d).toMatchObject({ direction: 'downlink', receivedAfterLastEcho: 88 });
    // Within the packets in flight of one round trip of the end (RTT 50 ms at 20 ms frames: 3).
    expect(cutDirection(input({ received: echoed(range(0, 11)), rttP50Ms: 50, report: { packets: 97, bytes: 1, highestSeq: 96, echoed: 97 } })).direction).toBe('downlink');
  });

  it('both: the reflector got a packet after the last echo back, then stopped too (a both-way packet counter)', () => {
    const d = cutDirection(input({ received: echoed(range(0, 11)), report: { packets: 13, bytes: 1300, highestSeq: 12, echoed: 13 } }));
    expect(d).toEqual({
      direction: 'both',
      reason: 'the reflector received 1 packet(s) after the last one whose echo came back (seq 11), then stopped receiving at seq 12 of 99: both ways cut',
      reflectorHighestSeq: 12,
      lastEchoedSeq: 11,
      receivedAfterLastEcho: 1,
    });
  });

  it('unknown without a report', () => {
    expect(cutDirection(input({ received: echoed(range(0, 11)) }))).toMatchObject({ direction: 'unknown', lastEchoedSeq: 11, reflectorHighestSeq: null });
  });
});
