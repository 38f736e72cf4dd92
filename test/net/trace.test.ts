import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import { TRACE_CHANNELS } from '../../src/net/trace.js';
import type { Evidence } from '../../src/result.js';
import { counterInto } from '../helpers/net.js';
import { tcpServer } from '../helpers/servers.js';
import { runOnce, specFor } from '../helpers/spec.js';

describe('traffic counter', () => {
  it('a stream: bytes each way, the first 64 bytes across chunks, the time to the first byte once', () => {
    const ev: Evidence = {};
    const c = counterInto(ev);
    expect(ev).toEqual({ bytesSent: 0, bytesReceived: 0 });
    c.sent(43);
    c.received(Buffer.alloc(40, 0xaa));
    const ttfb = ev.timeToFirstByteMs;
    c.received(Buffer.alloc(40, 0xbb));
    expect(ev).toMatchObject({ bytesSent: 43, bytesReceived: 80, timeToFirstByteMs: ttfb });
    expect(ev.firstBytesHex).toBe('aa'.repeat(40) + 'bb'.repeat(24));
    expect(ev.datagramsSent).toBeUndefined();
  });

  it('datagrams: counted one by one, and the first datagram alone is the first bytes', () => {
    const ev: Evidence = {};
    const c = counterInto(ev, { datagrams: true });
    c.sent(20);
    c.sent(20);
    c.received(Buffer.from('0101', 'hex'));
    c.received(Buffer.from('ffff', 'hex'));
    expect(ev).toMatchObject({ bytesSent: 40, datagramsSent: 2, bytesReceived: 4, datagramsReceived: 2, firstBytesHex: '0101' });
  });
});

describe('diagnostics_channel', () => {
  it('publishes phase start and end and the connect of a tcp phase, with the probe and phase names', async () => {
    const echo = await tcpServer('echo');
    const events: Array<[string, Record<string, unknown>]> = [];
    const listeners = Object.entries(TRACE_CHANNELS).map(([name, ch]) => {
      const fn = (message: unknown): void => void events.push([name, message as Record<string, unknown>]);
      subscribe(ch.name, fn);
      return () => unsubscribe(ch.name, fn);
    });
    try {
      const run = await runOnce(specFor({ endpoint: { host: '127.0.0.1', port: echo.port }, phases: ['tcp'], service: 'lab', target: 'echo' }));
      expect(run.failure).toBeNull();
      expect(events.map(([name]) => name)).toEqual(['phaseStart', 'connect', 'phaseEnd']);
      expect(events[0]![1]).toEqual({ probe: 'lab/echo', phase: 'tcp', endpoint: `127.0.0.1:${echo.port}` });
      expect(events[1]![1]).toMatchObject({ probe: 'lab/echo', phase: 'tcp', transport: 'tcp', address: '127.0.0.1', port: echo.port });
      expect(events[1]![1].error).toBeUndefined();
      expect(events[2]![1]).toMatchObject({ probe: 'lab/echo', phase: 'tcp', ok: true, failure: null, durationMs: run.phases[0]!.durationMs });
    } finally {
      for (const off of listeners) off();
      await echo.close();
    }
  });

  it('a refused connect is published with its error code', async () => {
    const events: Array<Record<string, unknown>> = [];
    const fn = (m: unknown): void => void events.push(m as Record<string, unknown>);
    subscribe(TRACE_CHANNELS.connect.name, fn);
    try {
      // Port 9 (discard) on loopback: nothing listens there in the test environment.
      const run = await runOnce(specFor({ endpoint: { host: '127.0.0.1', port: 9 }, phases: ['tcp'] }));
      expect(run.failure).toBe('connection_refused');
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ transport: 'tcp', address: '127.0.0.1', port: 9, error: 'ECONNREFUSED' });
    } finally {
      unsubscribe(TRACE_CHANNELS.connect.name, fn);
    }
  });
});
