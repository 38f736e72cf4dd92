/**
 * The TURN reply oracle: a real coturn (it answers an unauthenticated Allocate with 401, REALM and
 * NONCE, over UDP and TCP), and scripted servers for what coturn never does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { turnChallengePhase } from '../../src/phases/turn-challenge.js';
import * as A from '../../src/protocol/stun-attributes.js';
import { buildMessage, parseMessage, type StunMessage } from '../../src/protocol/stun.js';
import { METHOD } from '../../src/protocol/turn.js';
import { TURN_REALM, coturnMissing, startLoopbackCoturn, type Coturn } from '../lab/coturn.js';
import { describeNeeding } from '../helpers/requires.js';
import { runOnce, specFor } from '../helpers/spec.js';
import { scriptedServer } from '../helpers/turn-server.js';

const challengeSpec = (port: number, params: Record<string, unknown> = {}, timeoutMs = 3000) =>
  specFor({ endpoint: { host: '127.0.0.1', port }, phases: [{ 'turn-challenge': { rtoMs: 50, rc: 3, rm: 4, ...params } }], timeoutMs });

describeNeeding(coturnMissing(), 'turn-challenge against coturn on loopback', () => {
  let coturn: Coturn;
  beforeAll(async () => {
    coturn = await startLoopbackCoturn();
  }, 20_000);
  afterAll(() => coturn?.stop());

  it.each(['udp', 'tcp'] as const)('over %s: the 401 with REALM and NONCE on our transaction is ok; nothing more is sent', async (transport) => {
    const run = await runOnce(challengeSpec(coturn.port, { transport }));
    expect(run.failure).toBeNull();
    const phase = run.phases.find((p) => p.phase === 'turn-challenge')!;
    expect(phase).toMatchObject({ ok: true, transport, endpoint: `127.0.0.1:${coturn.port}` });
    expect(phase.evidence).toMatchObject({ errorCode: 401, errorReason: 'Unauthorized', realm: TURN_REALM, requestBytes: 28, retransmissions: 0, bytesSent: 28 });
    expect(phase.evidence.nonceBytes).toBeGreaterThan(0);
    expect(String(phase.evidence.software)).toMatch(/^Coturn-/);
    if (transport === 'udp') {
      const ledger = phase.evidence.ledger as Array<{ dir: string; bytes: number }>;
      expect(ledger.map((l) => [l.dir, l.bytes])).toEqual([
        ['out', 28],
        ['in', phase.evidence.bytesReceived],
      ]);
      expect(phase.evidence).toMatchObject({ datagramsSent: 1, datagramsReceived: 1 });
    }
  });
});

describe('turn-challenge against scripted servers', () => {
  it('silence: generic_timeout_error after the whole schedule, every request in the ledger and nothing in', async () => {
    const server = await scriptedServer(() => []);
    try {
      const run = await runOnce(challengeSpec(server.port));
      expect(run).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'turn-challenge' });
      const e = run.phases[0]!.evidence;
      expect(e).toMatchObject({ requestsSent: 3, retransmissions: 2, datagramsSent: 3, datagramsReceived: 0, bytesSent: 84, bytesReceived: 0 });
      expect((e.ledger as Array<{ dir: string }>).map((l) => l.dir)).toEqual(['out', 'out', 'out']);
      expect(server.requests).toHaveLength(3);
      expect(new Set(server.requests.map((r) => r.transactionId.toString('hex'))).size).toBe(1);
    } finally {
      server.close();
    }
  });

  const answer = (req: StunMessage, cls: 'error' | 'success', attributes: ReturnType<typeof A.errorCode>[]) =>
    buildMessage({ method: req.method, class: cls, transactionId: req.transactionId, attributes });

  it('a 401 without REALM and NONCE is proto_malformed; another error code is proto_error with it', async () => {
    const bare = await scriptedServer((req) => [answer(req, 'error', [A.errorCode(401, 'Unauthorized')])]);
    const other = await scriptedServer((req) => [answer(req, 'error', [A.errorCode(403, 'Forbidden')])]);
    try {
      expect(await runOnce(challengeSpec(bare.port))).toMatchObject({ failure: 'proto_malformed', failedPhase: 'turn-challenge' });
      const forbidden = await runOnce(challengeSpec(other.port));
      expect(forbidden).toMatchObject({ failure: 'proto_error' });
      expect(forbidden.phases[0]!.evidence).toMatchObject({ errorCode: 403, errorReason: 'Forbidden' });
    } finally {
      bare.close();
      other.close();
    }
  });

  it('a server that allocates for anyone: ok, allocatedWithoutCredentials, and the allocation given back', async () => {
    const server = await scriptedServer((req) =>
      req.method === METHOD.ALLOCATE
        ? [answer(req, 'success', [A.xorRelayedAddress({ family: 'IPv4', address: '127.0.0.1', port: 50000 }), A.xorMappedAddress({ family: 'IPv4', address: '127.0.0.1', port: 40000 })])]
        : [answer(req, 'success', [])],
    );
    try {
      const run = await runOnce(challengeSpec(server.port));
      expect(run.failure).toBeNull();
      expect(run.phases[0]!.evidence).toMatchObject({ allocatedWithoutCredentials: true, released: true });
      expect(server.requests.map((r) => [r.method, A.getLifetime(r) ?? null])).toEqual([
        [METHOD.ALLOCATE, null],
        [METHOD.REFRESH, 0],
      ]);
    } finally {
      server.close();
    }
  });

  it('the request is exactly the 28 bytes a Telegram client sends: Allocate, REQUESTED-TRANSPORT UDP, no FINGERPRINT', async () => {
    const server = await scriptedServer(() => []);
    try {
      await runOnce(challengeSpec(server.port, { rc: 1, rm: 1 }, 1000));
      const req = server.requests[0]!;
      expect(req.raw.length).toBe(28);
      expect(parseMessage(req.raw).attributes.map((a) => a.type)).toEqual([A.ATTR.REQUESTED_TRANSPORT]);
      expect(req.raw.subarray(20).toString('hex')).toBe('0019000411000000');
    } finally {
      server.close();
    }
  });

  it('refuses a UDP phase timeout shorter than its retransmission schedule at plan time', () => {
    const p = turnChallengePhase.params.parse({});
    expect(turnChallengePhase.check!(p, { target: 't', endpoint: { host: '198.18.2.2', port: 1400 }, timeoutMs: 10_000, settings: { resolver: null, extraCa: [], userAgent: 'x' }, before: [] })).toBe(
      'phaseTimeout 10000 ms must exceed the retransmission schedule (39500 ms for rtoMs 500, rc 7, rm 16)',
    );
  });
});
