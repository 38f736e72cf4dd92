import { describe, expect, it } from 'vitest';
import { FlowTable } from '../../src/reflector/flows.js';

describe('FlowTable', () => {
  it('counts packets, bytes, the highest sequence and echoes per source and flow id', () => {
    const t = new FlowTable({ maxFlows: 10, idleMs: 1000 });
    const a = t.received('198.18.1.2', 1, 0, 100, 0);
    a.echo();
    expect([a.packets, a.bytes]).toEqual([1, 100]);
    const b = t.received('198.18.1.2', 1, 5, 120, 10);
    expect([b.packets, b.bytes]).toEqual([2, 220]);
    t.received('198.18.1.2', 1, 3, 80, 20);
    t.received('198.18.1.3', 1, 9, 1, 20);
    expect(t.report('198.18.1.2', 1)).toEqual({ packets: 3, bytes: 300, highestSeq: 5, echoed: 1 });
    expect(t.report('198.18.1.3', 1)).toEqual({ packets: 1, bytes: 1, highestSeq: 9, echoed: 0 });
    expect(t.report('198.18.1.2', 2)).toEqual({ packets: 0, bytes: 0, highestSeq: null, echoed: 0 });
  });

  it('stays bounded: the least recently used flow goes first, idle ones expire', () => {
    const t = new FlowTable({ maxFlows: 2, idleMs: 1000 });
    t.received('s', 1, 0, 1, 0);
    t.received('s', 2, 0, 1, 1);
    t.received('s', 1, 1, 1, 2); // flow 1 used again: flow 2 is now the oldest
    t.received('s', 3, 0, 1, 3);
    expect(t.size).toBe(2);
    expect(t.report('s', 2).packets).toBe(0);
    expect(t.report('s', 1).packets).toBe(2);
    expect(t.expire(1002.5)).toBe(1); // flow 1 last seen at 2, flow 3 at 3
    expect(t.report('s', 3).packets).toBe(1);
  });
});
