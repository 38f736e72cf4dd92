/**
 * Which way a media flow lost its packets, from what the reflector says it received: the counts
 * in each echo (src/protocol/media-packet.ts) and the report it gives afterwards on a new flow
 * (src/protocol/media-report.ts). Pure: numbers in, numbers out.
 *
 * - Uplink: what left us and reached the reflector. With the report, the whole stream; from the
 *   echoes alone, only up to the last echo that came back (what came after it is unseen).
 * - Downlink: the reflector's echoes that reached us, every authentic echo datagram counted (a
 *   censor counts packets, duplicates included), against what the reflector says it echoed.
 *
 * The cut: when a stream went silent (cut off, or nothing back), the reflector's highest
 * sequence number received against the last one whose echo came back says where it broke:
 * - `uplink`: the last packet the reflector received is one whose echo came back; nothing it got
 *   went unanswered: our packets stopped reaching it. (Whether the way down would still carry
 *   anything cannot be seen: the reflector had nothing more to send.)
 * - `downlink`: the reflector received to the end of the stream (within the packets in flight of
 *   one round trip) while its echoes stopped coming back.
 * - `both`: the reflector received packets after the last one whose echo came back, then stopped
 *   receiving too before the stream ended, as a censor counting a flow's packets in both
 *   directions cuts it. One lost echo just before an uplink cut looks the same: the evidence
 *   gives how many packets the reflector got after the last echo back, so a reader can judge.
 * - `unknown`: no report came (the question on a new flow went unanswered too).
 */
import type { FlowReport } from '../protocol/media-report.js';

export interface DirectionInput {
  /** What we sent, by sequence number (0, 1, 2, ...). */
  readonly sent: ReadonlyArray<{ readonly seq: number; readonly size: number }>;
  /** The echoes that came back, with the reflector's counts when it echoed each. */
  readonly received: ReadonlyArray<{ readonly seq: number; readonly reflector: { readonly packets: number; readonly bytes: number } }>;
  /** Every authentic echo datagram that arrived (duplicates included) and their bytes. */
  readonly echoes: { readonly packets: number; readonly bytes: number };
  readonly report: FlowReport | null;
  /** The median RTT, for the packets in flight at a cut; null when nothing came back. */
  readonly rttP50Ms: number | null;
  readonly frameMs: number;
}

export interface DirectionCounts {
  readonly packets: number;
  readonly bytes: number;
  /** 1 − what arrived over what was sent that way; null when the sending side's count is unknown. */
  readonly lossRatio: number | null;
}

export interface PerDirection {
  /** `report`: the reflector's own count of the whole flow; `echoes`: its counts up to the last echo that came back. */
  readonly source: 'report' | 'echoes';
  readonly uplink: DirectionCounts;
  readonly downlink: DirectionCounts;
}

export type CutDirectionName = 'uplink' | 'downlink' | 'both' | 'unknown';

export interface CutDirection {
  readonly direction: CutDirectionName;
  readonly reason: string;
  /** The reflector's highest sequence received (report), and the highest one whose echo came back. */
  readonly reflectorHighestSeq: number | null;
  readonly lastEchoedSeq: number | null;
  /** Packets the reflector received after the last one whose echo came back. */
  readonly receivedAfterLastEcho: number | null;
}

const ratio = (got: number, of: number): number | null => (of > 0 ? Math.max(0, 1 - got / of) : null);

export function perDirection(i: DirectionInput): PerDirection | null {
  const downlinkGot = { packets: i.echoes.packets, bytes: i.echoes.bytes };
  if (i.report) {
    return {
      source: 'report',
      uplink: { packets: i.report.packets, bytes: i.report.bytes, lossRatio: ratio(i.report.packets, i.sent.length) },
      downlink: { ...downlinkGot, lossRatio: ratio(i.echoes.packets, i.report.echoed) },
    };
  }
  if (i.received.length === 0) return null;
  // The echo carrying the largest count is the furthest the reflector's own view reaches.
  const furthest = i.received.reduce((a, b) => (b.reflector.packets > a.reflector.packets ? b : a));
  const sentUpTo = i.sent.filter((s) => s.seq <= furthest.seq).length;
  return {
    source: 'echoes',
    uplink: { packets: furthest.reflector.packets, bytes: furthest.reflector.bytes, lossRatio: ratio(furthest.reflector.packets, sentUpTo) },
    // Each of those packets was echoed; the echoes back are those counted by then (all, as none came after it is known).
    downlink: { ...downlinkGot, lossRatio: ratio(i.echoes.packets, furthest.reflector.packets) },
  };
}

/** Where a silent stream broke (see the module comment). */
export function cutDirection(i: DirectionInput): CutDirection {
  const lastEchoedSeq = i.received.length > 0 ? Math.max(...i.received.map((r) => r.seq)) : null;
  if (!i.report) {
    return {
      direction: 'unknown',
      reason: 'the reflector did not answer the report request on a new flow either: which way the cut went cannot be seen',
      reflectorHighestSeq: null,
      lastEchoedSeq,
      receivedAfterLastEcho: null,
    };
  }
  const highest = i.report.highestSeq;
  const lastSentSeq = i.sent.length > 0 ? Math.max(...i.sent.map((s) => s.seq)) : -1;
  const after = highest === null ? 0 : highest - (lastEchoedSeq ?? -1);
  const base = { reflectorHighestSeq: highest, lastEchoedSeq, receivedAfterLastEcho: Math.max(0, after) };
  if (highest === null || after <= 0) {
    return {
      ...base,
      direction: 'uplink',
      reason:
        highest === null
          ? 'the reflector received nothing of this flow: our packets did not reach it'
          : `the last packet the reflector received (seq ${highest}) came back to us: our packets stopped reaching it`,
    };
  }
  const inFlight = Math.max(1, Math.ceil((i.rttP50Ms ?? 0) / i.frameMs));
  if (highest >= lastSentSeq - inFlight) {
    return {
      ...base,
      direction: 'downlink',
      reason: `the reflector received to the end of the stream (seq ${highest} of ${lastSentSeq}) while its echoes stopped coming back after seq ${lastEchoedSeq ?? 'none'}`,
    };
  }
  return {
    ...base,
    direction: 'both',
    reason: `the reflector received ${after} packet(s) after the last one whose echo came back (seq ${lastEchoedSeq ?? 'none'}), then stopped receiving at seq ${highest} of ${lastSentSeq}: both ways cut`,
  };
}
