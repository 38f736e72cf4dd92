import type { FlowReport } from '../protocol/media-report.js';
import { IdleMap } from './idle-map.js';

/**
 * What the reflector has received of each media flow, so that every echo and the report after a
 * stream can tell the prober how much of its flow arrived (src/protocol/media-packet.ts echo,
 * src/protocol/media-report.ts). A flow is a source (`sourceKey`: the IPv4 address or IPv6 /64,
 * so a report from the prober's new socket finds it) and the stream's random flow id.
 *
 * Bounded like the source table (./idle-map.ts): at most `maxFlows` (the least recently used
 * forgotten first) and none idle longer than `idleMs`. A forgotten flow reports nothing received; a flow is
 * created only by an authentic packet, so a flood without the key creates none.
 */
export interface FlowLimits {
  readonly maxFlows: number;
  readonly idleMs: number;
}

interface FlowState {
  packets: number;
  bytes: number;
  highestSeq: number;
  echoed: number;
  lastSeenMs: number;
}

export class FlowTable {
  private readonly flows: IdleMap<FlowState>;

  constructor(limits: FlowLimits) {
    this.flows = new IdleMap(limits.idleMs, limits.maxFlows);
  }

  get size(): number {
    return this.flows.size;
  }

  /** Counts one authentic packet of a flow; returns the flow's counts with it included. */
  received(source: string, flowId: number, seq: number, bytes: number, nowMs: number): { readonly packets: number; readonly bytes: number; echo(): void } {
    const key = `${source}/${flowId}`;
    const s = this.flows.touch(key, nowMs) ?? this.flows.add(key, { packets: 0, bytes: 0, highestSeq: -1, echoed: 0, lastSeenMs: nowMs }, nowMs);
    s.packets++;
    s.bytes += bytes;
    s.highestSeq = Math.max(s.highestSeq, seq);
    return { packets: s.packets, bytes: s.bytes, echo: () => void s.echoed++ };
  }

  report(source: string, flowId: number): FlowReport {
    const s = this.flows.peek(`${source}/${flowId}`);
    if (!s) return { packets: 0, bytes: 0, highestSeq: null, echoed: 0 };
    return { packets: s.packets, bytes: s.bytes, highestSeq: s.highestSeq < 0 ? null : s.highestSeq, echoed: s.echoed };
  }

  /** Forgets flows idle longer than idleMs; returns how many. */
  expire(nowMs: number): number {
    return this.flows.expire(nowMs);
  }
}
