import type { FlowReport } from '../protocol/media-report.js';

/**
 * What the reflector has received of each media flow, so that every echo and the report after a
 * stream can tell the prober how much of its flow arrived (src/protocol/media-packet.ts echo,
 * src/protocol/media-report.ts). A flow is a source (`sourceKey`: the IPv4 address or IPv6 /64,
 * so a report from the prober's new socket finds it) and the stream's random flow id.
 *
 * Bounded like the source table: at most `maxFlows` (the least recently used forgotten first)
 * and none idle longer than `idleMs`. A forgotten flow reports nothing received; a flow is
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
  /** Least to most recently used: a Map iterates in insertion order, and every packet re-inserts. */
  private readonly flows = new Map<string, FlowState>();

  constructor(private readonly limits: FlowLimits) {}

  get size(): number {
    return this.flows.size;
  }

  /** Counts one authentic packet of a flow; returns the flow's counts with it included. */
  received(source: string, flowId: number, seq: number, bytes: number, nowMs: number): { readonly packets: number; readonly bytes: number; echo(): void } {
    const key = `${source}/${flowId}`;
    let s = this.flows.get(key);
    if (s) this.flows.delete(key);
    else {
      if (this.flows.size >= this.limits.maxFlows) this.evictOne(nowMs);
      s = { packets: 0, bytes: 0, highestSeq: -1, echoed: 0, lastSeenMs: nowMs };
    }
    this.flows.set(key, s);
    s.packets++;
    s.bytes += bytes;
    s.highestSeq = Math.max(s.highestSeq, seq);
    s.lastSeenMs = nowMs;
    const state = s;
    return { packets: s.packets, bytes: s.bytes, echo: () => void state.echoed++ };
  }

  report(source: string, flowId: number): FlowReport {
    const s = this.flows.get(`${source}/${flowId}`);
    if (!s) return { packets: 0, bytes: 0, highestSeq: null, echoed: 0 };
    return { packets: s.packets, bytes: s.bytes, highestSeq: s.highestSeq < 0 ? null : s.highestSeq, echoed: s.echoed };
  }

  /** Forgets flows idle longer than idleMs; returns how many. */
  expire(nowMs: number): number {
    let n = 0;
    for (const [key, s] of this.flows) {
      if (nowMs - s.lastSeenMs <= this.limits.idleMs) break;
      this.flows.delete(key);
      n++;
    }
    return n;
  }

  private evictOne(nowMs: number): void {
    if (this.expire(nowMs) > 0) return;
    const oldest = this.flows.keys().next();
    if (!oldest.done) this.flows.delete(oldest.value);
  }
}
