import { describe, expect, it } from 'vitest';
import { SafetyGuard } from '../../src/engine/guard.js';
import { StunClient } from '../../src/net/stun-client.js';
import { TurnAllocation } from '../../src/net/turn-allocation.js';
import { dialUdp } from '../../src/net/udp.js';
import * as A from '../../src/protocol/stun-attributes.js';
import { buildMessage, verifyIntegrity, type StunMessage } from '../../src/protocol/stun.js';
import { CHANNEL_MAX, CHANNEL_MIN, METHOD } from '../../src/protocol/turn.js';
import { TURN_PASSWORD, TURN_USER } from '../lab/coturn.js';
import { counterInto } from '../helpers/net.js';
import { TEST_ALLOW } from '../helpers/spec.js';
import { allocated, challenge, key, scriptedServer, type ScriptedServer } from '../helpers/turn-server.js';

const signedOk = (req: StunMessage): Buffer => buildMessage({ method: req.method, class: 'success', transactionId: req.transactionId, integrity: key });
const quota = (req: StunMessage): Buffer =>
  buildMessage({ method: req.method, class: 'error', transactionId: req.transactionId, attributes: [A.errorCode(486, 'Allocation Quota Reached')], integrity: key });

async function allocationTo(server: ScriptedServer) {
  const signal = new AbortController().signal;
  const channel = await dialUdp({ address: '127.0.0.1', port: server.port, guard: new SafetyGuard({ allow: TEST_ALLOW }), signal, counter: counterInto({}, { datagrams: true }) });
  const client = new StunClient({ kind: 'datagram', channel }, signal);
  const allocation = new TurnAllocation(client, { rtoMs: 50, rc: 2, rm: 2 }, { username: TURN_USER, password: TURN_PASSWORD });
  return { allocation, close: () => (client.close(), channel.close()) };
}
const now = () => performance.now();

describe('one TURN allocation', () => {
  it('an Allocate whose answer is lost may still have allocated: it is released', async () => {
    // The server allocates but its answers to Allocate never arrive; it answers the Refresh.
    const server = await scriptedServer((req, n) => (n === 1 ? [challenge(req, 401, 'n1')] : req.method === METHOD.ALLOCATE ? [] : [signedOk(req)]));
    const { allocation, close } = await allocationTo(server);
    try {
      expect(await allocation.challenge(new AbortController().signal)).toBeNull();
      await expect(allocation.allocate(new AbortController().signal)).rejects.toMatchObject({ code: 'generic_timeout_error' });
      expect(allocation.state).toBe('maybe');
      const released = await allocation.release(1000, now);
      expect(released).toMatchObject({ released: true });
      const refresh = server.requests.at(-1)!;
      expect(refresh.method).toBe(METHOD.REFRESH);
      expect(A.getLifetime(refresh)).toBe(0);
      expect(verifyIntegrity(refresh, key)).toBe(true);
      expect(allocation.state).toBe('none');
    } finally {
      close();
      server.close();
    }
  });

  it('an Allocate refused with an error response allocated nothing: no release goes out', async () => {
    const server = await scriptedServer((req, n) => (n === 1 ? [challenge(req, 401, 'n1')] : [quota(req)]));
    const { allocation, close } = await allocationTo(server);
    try {
      await expect(allocation.open(new AbortController().signal)).rejects.toMatchObject({ code: 'turn_quota' });
      expect(allocation.state).toBe('none');
      expect(await allocation.release(1000, now)).toBeNull();
      expect(server.requests.map((r) => r.method)).toEqual([METHOD.ALLOCATE, METHOD.ALLOCATE]);
    } finally {
      close();
      server.close();
    }
  });

  it('binds a channel from the valid range to the peer, and a release nobody answers is reported, never thrown', async () => {
    const server = await scriptedServer((req, n) =>
      n === 1 ? [challenge(req, 401, 'n1')] : req.method === METHOD.ALLOCATE ? [allocated(req)] : req.method === METHOD.REFRESH ? [] : [signedOk(req)],
    );
    const { allocation, close } = await allocationTo(server);
    try {
      const got = await allocation.open(new AbortController().signal);
      expect(got).toEqual({ relayed: { family: 'IPv4', address: '127.0.0.1', port: 50000 }, mapped: { family: 'IPv4', address: '127.0.0.1', port: 40000 }, lifetime: 600, software: null });
      const peer = { family: 'IPv4' as const, address: '127.0.0.1', port: 3480 };
      const channel = await allocation.bindChannel(peer, new AbortController().signal);
      expect(channel).toBeGreaterThanOrEqual(CHANNEL_MIN);
      expect(channel).toBeLessThanOrEqual(CHANNEL_MAX);
      const bind = server.requests.at(-1)!;
      expect([bind.method, A.getChannelNumber(bind), A.getXorPeerAddress(bind)]).toEqual([METHOD.CHANNEL_BIND, channel, peer]);
      expect(await allocation.release(150, now)).toMatchObject({ released: false, error: 'generic_timeout_error' });
    } finally {
      close();
      server.close();
    }
  });
});
