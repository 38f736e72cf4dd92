import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StunClient, retransmissionSchedule } from '../../src/net/stun-client.js';
import type { DatagramChannel } from '../../src/net/udp.js';
import * as A from '../../src/protocol/stun-attributes.js';
import { METHOD_BINDING, buildMessage, newTransactionId } from '../../src/protocol/stun.js';

/** A datagram channel in memory: what was sent and when (on the faked clock), and answers pushed by the test. */
function fakeChannel() {
  const sentAt: number[] = [];
  const inbox: Buffer[] = [];
  let waiting: ((b: Buffer) => void) | null = null;
  const channel: DatagramChannel = {
    localAddress: '127.0.0.1',
    localPort: 40000,
    remoteAddress: '127.0.0.1',
    remotePort: 3478,
    send: () => (sentAt.push(performance.now()), true),
    receive: () => new Promise((resolve) => (inbox.length > 0 ? resolve(inbox.shift()!) : (waiting = resolve))),
    close: () => {},
  };
  const answer = (b: Buffer): void => {
    if (!waiting) return void inbox.push(b);
    waiting(b);
    waiting = null;
  };
  return { channel, sentAt, answer };
}

describe('STUN client transactions on the RFC 8489 §6.2.1 schedule (fake timers: exact, not within slack)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends at 0, RTO, 3 RTO, 7 RTO, 15 RTO and gives up Rm RTOs after the last', async () => {
    const { channel, sentAt } = fakeChannel();
    const client = new StunClient({ kind: 'datagram', channel }, new AbortController().signal);
    const id = newTransactionId();
    const start = performance.now();
    const outcome = client.transact(buildMessage({ method: METHOD_BINDING, class: 'request', transactionId: id }), id, { retransmission: { rtoMs: 100, rc: 5, rm: 4 } });
    const failed = outcome.catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(99);
    expect(sentAt).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sentAt).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1500 - 100);
    expect(sentAt.map((t) => t - start)).toEqual([0, 100, 300, 700, 1500]);
    expect(retransmissionSchedule({ rtoMs: 100, rc: 5, rm: 4 })).toEqual({ sendAtMs: [0, 100, 300, 700, 1500], timeoutAtMs: 1900 });
    await vi.advanceTimersByTimeAsync(399);
    let settled = false;
    void failed.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await failed).toMatchObject({ code: 'generic_timeout_error', evidence: { requestsSent: 5, retransmissions: 4, waitedMs: 1900 } });
    client.close();
  });

  it('an answer to the third request reports every attempt and when the answer came', async () => {
    const { channel, answer } = fakeChannel();
    const client = new StunClient({ kind: 'datagram', channel }, new AbortController().signal);
    const id = newTransactionId();
    const attempts: Array<[number, number]> = [];
    const outcome = client.transact(buildMessage({ method: METHOD_BINDING, class: 'request', transactionId: id }), id, {
      retransmission: { rtoMs: 100, rc: 5, rm: 4 },
      onAttempt: (n, atMs) => attempts.push([n, atMs]),
    });
    await vi.advanceTimersByTimeAsync(350);
    answer(buildMessage({ method: METHOD_BINDING, class: 'success', transactionId: id, attributes: [A.xorMappedAddress({ family: 'IPv4', address: '127.0.0.1', port: 40000 })] }));
    const got = await outcome;
    expect(attempts).toEqual([
      [1, 0],
      [2, 100],
      [3, 300],
    ]);
    expect({ attempts: got.attempts, sentAtMs: got.sentAtMs, answeredAtMs: got.answeredAtMs }).toEqual({ attempts: 3, sentAtMs: [0, 100, 300], answeredAtMs: 350 });
    client.close();
  });
});
