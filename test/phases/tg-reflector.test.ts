/**
 * The reflector probe against the lab's mock reflector (test/lab/servers/tg-reflector.ts, written
 * from libtgvoip's MockReflector.cpp, not from callprobe's codec), in process on loopback.
 */
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tgReflectorPhase } from '../../src/phases/tg-reflector.js';
import { startMockReflector, type MockReflector } from '../lab/servers/tg-reflector.js';
import { runOnce, specFor } from '../helpers/spec.js';

const TAG = '0123456789abcdef0123456789abcdef';
const reflectorSpec = (port: number, params: Record<string, unknown> = {}, timeoutMs = 3000) =>
  specFor({ endpoint: { host: '127.0.0.1', port }, phases: [{ 'tg-reflector': { intervalMs: 100, hellos: 5, waitMs: 300, ...params } }], timeoutMs });

describe('tg-reflector against the mock reflector', () => {
  let any: MockReflector;
  let picky: MockReflector;
  const hellos: Array<{ tag: string; answered: boolean }> = [];
  beforeAll(async () => {
    any = await startMockReflector({ host: '127.0.0.1', ports: [0], onHello: (e) => hellos.push(e) });
    picky = await startMockReflector({ host: '127.0.0.1', ports: [0], answer: 'registered', registered: [TAG] });
  });
  afterAll(async () => {
    await any.close();
    await picky.close();
  });

  it.each(['tgcalls', 'libtgvoip'] as const)('a %s hello gets the self-info: the reflector clock, our query id, the address it saw us at', async (style) => {
    const run = await runOnce(reflectorSpec(any.ports[0]!, { style }));
    expect(run.failure).toBeNull();
    const e = run.phases[0]!.evidence;
    expect(e).toMatchObject({ style, reply: 'self-info', answeredAfterHellos: 1, hellosSent: 1, queryIdEchoed: true, strayAnswers: 0, datagramsSent: 1, datagramsReceived: 1, bytesSent: 40, bytesReceived: 64 });
    expect(e.seenAs).toBe(e.localAddress);
    expect(Math.abs(e.clockSkewS as number)).toBeLessThanOrEqual(1);
    expect(run.phases[0]).toMatchObject({ transport: 'udp', endpoint: `127.0.0.1:${any.ports[0]}` });
  });

  it('a reflector that ignores a tag it never issued: silence, every hello in the ledger, generic_timeout_error', async () => {
    const run = await runOnce(reflectorSpec(picky.ports[0]!));
    expect(run).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'tg-reflector' });
    const e = run.phases[0]!.evidence;
    expect(e).toMatchObject({ hellosSent: 5, datagramsSent: 5, datagramsReceived: 0, bytesSent: 200, waitedMs: 700 });
    expect((e.ledger as Array<{ dir: string; bytes: number }>).map((l) => `${l.dir} ${l.bytes}`)).toEqual(Array(5).fill('out 40'));
  });

  it('the same reflector answers the tag it was told of (the catalogue may give one)', async () => {
    const run = await runOnce(reflectorSpec(picky.ports[0]!, { peerTag: TAG, style: 'libtgvoip' }));
    expect(run.failure).toBeNull();
    expect(run.phases[0]!.evidence).toMatchObject({ tagHex: TAG, reply: 'self-info' });
  });

  it('datagrams that are not an answer to our tag are stray; only those back: proto_mismatch', async () => {
    const liar = createSocket('udp4');
    liar.on('message', (_m, from) => liar.send(Buffer.alloc(64, 0xaa), from.port, from.address));
    liar.bind(0, '127.0.0.1');
    await once(liar, 'listening');
    try {
      const run = await runOnce(reflectorSpec(liar.address().port, { hellos: 2 }));
      expect(run).toMatchObject({ failure: 'proto_mismatch', failedPhase: 'tg-reflector' });
      expect(run.phases[0]!.evidence).toMatchObject({ strayAnswers: 2, firstStrayHex: 'aa'.repeat(32) });
    } finally {
      liar.close();
    }
  });

  it('plans its hellos within the phase timeout, and is the ambiguous kind of silence', () => {
    const p = tgReflectorPhase.params.parse({});
    expect(p).toEqual({ style: 'tgcalls', hellos: 10, intervalMs: 500, waitMs: 1000 });
    const planned = { target: 't', endpoint: { host: '198.18.2.2', port: 597 }, settings: { resolver: null, extraCa: [], userAgent: 'x' }, before: [] };
    expect(tgReflectorPhase.check!(p, { ...planned, timeoutMs: 5500 })).toBe("phaseTimeout 5500 ms must exceed the hellos' schedule (5500 ms for 10 hellos every 500 ms and 1000 ms of waiting)");
    expect(tgReflectorPhase.check!(p, { ...planned, timeoutMs: 10_000 })).toBeNull();
    expect(tgReflectorPhase.silenceAmbiguous?.(p)).toBe(true);
  });
});
