/**
 * The `stun` phase on loopback against small in-process servers whose misbehaviour is exact
 * (drop the first N requests, answer with another transaction id, answer garbage, an error
 * response, a classic RFC 3489 answer), over UDP with a short retransmission timer, and over TCP
 * with the answer split across writes. The real peers (coturn, node-stun) are in the lab tests.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { duration } from '../../src/units.js';
import { retransmissionSchedule } from '../../src/net/stun-client.js';
import { stunPhase } from '../../src/phases/stun.js';
import * as A from '../../src/protocol/stun-attributes.js';
import { METHOD_BINDING, buildMessage, newTransactionId, parseMessage, stunMessageLength, type StunMessage } from '../../src/protocol/stun.js';
import { runOnce, specFor } from '../helpers/spec.js';

type Behaviour = (request: StunMessage, from: { address: string; port: number }, n: number) => Buffer[] | null;

interface FakeUdp {
  port: number;
  received: Buffer[];
  close(): Promise<void>;
}

async function fakeUdpStun(behaviour: Behaviour): Promise<FakeUdp> {
  const socket: UdpSocket = createSocket('udp4');
  const received: Buffer[] = [];
  socket.on('message', (msg, rinfo) => {
    received.push(msg);
    const answers = behaviour(parseMessage(msg), rinfo, received.length) ?? [];
    for (const a of answers) socket.send(a, rinfo.port, rinfo.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return {
    port: socket.address().port,
    received,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}

const success = (req: StunMessage, from: { address: string; port: number }, extra: A.TransportAddress | null = null): Buffer =>
  buildMessage({
    method: METHOD_BINDING,
    class: 'success',
    transactionId: req.transactionId,
    attributes: [A.xorMappedAddress(extra ?? { family: 'IPv4', ...from }), A.software('fake-stun 1.0')],
    fingerprint: true,
  });

const stunSpec = (port: number, params: Record<string, unknown> = {}, timeoutMs = 3000) =>
  specFor({ endpoint: { host: '127.0.0.1', port }, phases: [{ stun: { rtoMs: 50, rc: 3, rm: 4, ...params } }], timeoutMs });

describe('stun phase over UDP', () => {
  let server: FakeUdp | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('reports the mapped address, that it equals our local address, SOFTWARE and the RTT per attempt', async () => {
    server = await fakeUdpStun((req, from) => [success(req, from)]);
    const run = await runOnce(stunSpec(server.port));
    expect(run.failure).toBeNull();
    const [stun] = run.phases;
    expect(stun).toMatchObject({ phase: 'stun', transport: 'udp', endpoint: `127.0.0.1:${server.port}`, ok: true });
    const e = stun!.evidence;
    expect(e.mappedAddress).toBe(e.localAddress);
    expect(e).toMatchObject({
      purpose: 'stun-server',
      mappedEqualsLocal: true,
      behindNat: false,
      classicAnswer: false,
      mappedAttribute: 'XOR-MAPPED-ADDRESS',
      magicCookie: true,
      software: 'fake-stun 1.0',
      retransmissions: 0,
      bytesSent: 20,
      datagramsSent: 1,
      datagramsReceived: 1,
      responseAttributes: ['XOR-MAPPED-ADDRESS', 'SOFTWARE', 'FINGERPRINT'],
      scheduleMs: 50 + 100 + 4 * 50,
    });
    // Sent once the UDP socket was open: its offset counts from the phase start, as every offset does.
    expect(e.attempts).toEqual([{ attempt: 1, sentAtMs: expect.any(Number), rttMs: e.rttMs }]);
    const [first] = e.attempts as Array<{ sentAtMs: number }>;
    expect(first!.sentAtMs).toBeGreaterThan(0);
    expect(first!.sentAtMs + (e.rttMs as number)).toBeLessThanOrEqual(run.phases[0]!.durationMs);
    expect(server.received[0]!.length).toBe(20); // a bare Binding request, as ICE agents send
  });

  it('retransmits on the RFC 8489 schedule: the answer to the third request is reported with all three attempts', async () => {
    server = await fakeUdpStun((req, from, n) => (n < 3 ? null : [success(req, from)]));
    const run = await runOnce(stunSpec(server.port, { rtoMs: 100, rc: 5 }));
    expect(run.failure).toBeNull();
    const e = run.phases[0]!.evidence;
    const attempts = e.attempts as Array<{ attempt: number; sentAtMs: number; rttMs: number }>;
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    expect(e.retransmissions).toBe(2);
    // Sent at 0, RTO, 3 RTO (RFC 8489 §6.2.1): the exact schedule is checked on a faked clock in
    // test/net/stun-client.test.ts; here, on the real one, only that each attempt is timed after the last.
    expect(attempts[0]!.sentAtMs).toBeGreaterThan(0);
    expect(attempts[1]!.sentAtMs).toBeGreaterThan(attempts[0]!.sentAtMs);
    expect(attempts[2]!.sentAtMs).toBeGreaterThan(attempts[1]!.sentAtMs);
    // The two clocks agree: the RTTs differ by the time between the sends (to a few µs of rounding and call order).
    expect(Math.abs(attempts[0]!.rttMs - attempts[2]!.rttMs - (attempts[2]!.sentAtMs - attempts[0]!.sentAtMs))).toBeLessThan(0.1);
    expect(e.rttMs).toBe(attempts[2]!.rttMs);
    // Every retransmission carries the same transaction id.
    expect(new Set(server.received.map((r) => r.subarray(8, 20).toString('hex'))).size).toBe(1);
  });

  it('a silent server is generic_timeout_error after Rc requests and Rm RTOs, with the retransmission count', async () => {
    server = await fakeUdpStun(() => null);
    const t0 = performance.now();
    const run = await runOnce(stunSpec(server.port, { rtoMs: 40, rc: 4, rm: 3 }));
    const took = performance.now() - t0;
    expect(run).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'stun' });
    const e = run.phases[0]!.evidence;
    expect(e).toMatchObject({ requestsSent: 4, retransmissions: 3, waitedMs: 40 + 80 + 160 + 3 * 40, datagramsSent: 4, datagramsReceived: 0 });
    expect(server.received).toHaveLength(4);
    expect(took).toBeGreaterThanOrEqual(400);
  });

  it('waits past answers with the wrong transaction id (RFC 8489 §6.3) and takes the right one', async () => {
    server = await fakeUdpStun((req, from) => [
      success({ ...req, transactionId: newTransactionId() }, from),
      success(req, from),
    ]);
    const run = await runOnce(stunSpec(server.port));
    expect(run.failure).toBeNull();
    expect(run.phases[0]!.evidence.stray).toMatchObject({ mismatchedAnswers: 1, malformedAnswers: 0 });
  });

  it('only wrong transaction ids until the timeout: proto_mismatch, with the count', async () => {
    server = await fakeUdpStun((req, from) => [success({ ...req, transactionId: newTransactionId() }, from)]);
    const run = await runOnce(stunSpec(server.port));
    expect(run).toMatchObject({ failure: 'proto_mismatch', failedPhase: 'stun' });
    expect(run.phases[0]!.evidence).toMatchObject({ mismatchedAnswers: 3, requestsSent: 3, retransmissions: 2 });
  });

  it('only bytes that are not STUN: proto_malformed, with the first bytes', async () => {
    server = await fakeUdpStun(() => [Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')]);
    const run = await runOnce(stunSpec(server.port));
    expect(run).toMatchObject({ failure: 'proto_malformed', failedPhase: 'stun' });
    const e = run.phases[0]!.evidence;
    expect(e.malformedAnswers).toBe(3);
    expect(e.firstBytesHex).toBe(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n').toString('hex'));
  });

  it('an error response is proto_error with its code and reason', async () => {
    server = await fakeUdpStun((req) => [
      buildMessage({ method: METHOD_BINDING, class: 'error', transactionId: req.transactionId, attributes: [A.errorCode(401, 'Unauthenticated')] }),
    ]);
    const run = await runOnce(stunSpec(server.port));
    expect(run).toMatchObject({ failure: 'proto_error', failedPhase: 'stun' });
    expect(run.phases[0]!.evidence).toMatchObject({ errorCode: 401, errorReason: 'Unauthenticated' });
  });

  it('flags a classic RFC 3489 answer (MAPPED-ADDRESS only) and a mapped address unlike ours (behind NAT)', async () => {
    server = await fakeUdpStun((req) => [
      buildMessage({
        method: METHOD_BINDING,
        class: 'success',
        transactionId: req.magicCookie ? req.raw.subarray(4, 20) : req.transactionId,
        attributes: [A.mappedAddress({ family: 'IPv4', address: '198.18.0.77', port: 4242 })],
      }),
    ]);
    const run = await runOnce(stunSpec(server.port, { classic: true }));
    expect(run.failure).toBeNull();
    expect(run.phases[0]!.evidence).toMatchObject({
      classicAnswer: true,
      magicCookie: false,
      mappedAddress: '198.18.0.77:4242',
      mappedEqualsLocal: false,
      behindNat: true,
      software: null,
      bytesSent: 20,
    });
    expect(server.received[0]!.readUInt32BE(4)).not.toBe(0x2112a442); // no cookie in a classic request
  });

  it('an ICMP port unreachable (nothing listens) is connection_refused, not a silent timeout', async () => {
    const probe = await fakeUdpStun(() => null);
    const port = probe.port;
    await probe.close();
    const run = await runOnce(stunSpec(port, {}, 3000));
    expect(run).toMatchObject({ failure: 'connection_refused', failedPhase: 'stun' });
    expect(run.phases[0]!.evidence.error).toBe('ECONNREFUSED');
  });

  it('says when a target is a relay reachability probe', async () => {
    server = await fakeUdpStun((req, from) => [success(req, from)]);
    const note = 'a relay address observed in 2025 captures; a STUN answer shows reachability, not a working call';
    const run = await runOnce(stunSpec(server.port, { purpose: 'relay-reachability', note }));
    expect(run.phases[0]!.evidence).toMatchObject({ purpose: 'relay-reachability', note });
  });

  it('refuses a destination outside the allowlist with policy_denied and sends nothing', async () => {
    server = await fakeUdpStun((req, from) => [success(req, from)]);
    const run = await runOnce(stunSpec(server.port), { allow: ['198.18.0.0/15'] });
    expect(run).toMatchObject({ failure: 'policy_denied', failedPhase: 'stun' });
    expect(server.received).toHaveLength(0);
  });
});

describe('stun phase over TCP', () => {
  let server: Server;
  let port: number;
  const seen: Buffer[] = [];
  beforeAll(async () => {
    // Answers each framed request in two writes, so the phase must reassemble the stream.
    server = createServer((socket) => {
      let buf = Buffer.alloc(0);
      socket.on('error', () => {});
      socket.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        const len = stunMessageLength(buf);
        if (len === undefined || buf.length < len) return;
        const req = parseMessage(buf.subarray(0, len));
        seen.push(buf.subarray(0, len));
        buf = buf.subarray(len);
        const answer = success(req, { address: socket.remoteAddress!.replace(/^::ffff:/, ''), port: socket.remotePort! });
        socket.write(answer.subarray(0, 7));
        setTimeout(() => socket.write(answer.subarray(7)), 20);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('plans tcp before it, sends one request over the connection and reads the framed answer', async () => {
    const spec = specFor({ endpoint: { host: '127.0.0.1', port }, phases: [{ stun: { transport: 'tcp' } }] });
    expect(spec.phases.map((p) => p.name)).toEqual(['tcp', 'stun']);
    const run = await runOnce(spec);
    expect(run.failure).toBeNull();
    const stun = run.phases[1]!;
    expect(stun).toMatchObject({ phase: 'stun', transport: 'tcp', ok: true });
    expect(stun.evidence).toMatchObject({ bytesSent: 20, mappedEqualsLocal: true, retransmissions: 0, software: 'fake-stun 1.0' });
    expect(stun.evidence.bytesReceived).toBe(success(parseMessage(seen[0]!), { address: '127.0.0.1', port: 1 }).length);
  });
});

describe('stun phase parameters', () => {
  it('defaults to RFC 8489 §6.2.1: RTO 500 ms, Rc 7, Rm 16, a 39.5 s schedule', () => {
    const p = stunPhase.params.parse({});
    expect(p).toMatchObject({ transport: 'udp', rtoMs: 500, rc: 7, rm: 16, classic: false, purpose: 'stun-server' });
    expect(retransmissionSchedule(p)).toEqual({ sendAtMs: [0, 500, 1500, 3500, 7500, 15500, 31500], timeoutAtMs: 39_500 });
  });

  it('every stun target in the shipped catalogues has a phaseTimeout longer than its retransmission schedule', () => {
    const dir = join(import.meta.dirname, '..', '..', 'probes');
    const checked: string[] = [];
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
      const cat = parseYaml(readFileSync(join(dir, file), 'utf8')) as { targets: Array<{ name: string; phaseTimeout?: string; phases: unknown[] }> };
      for (const t of cat.targets) {
        for (const ph of t.phases) {
          const params = ph === 'stun' ? {} : typeof ph === 'object' && ph !== null && 'stun' in ph ? (ph as { stun: unknown }).stun : undefined;
          if (params === undefined) continue;
          const schedule = retransmissionSchedule(stunPhase.params.parse(params ?? {})).timeoutAtMs;
          expect(t.phaseTimeout, `${file} ${t.name}: phaseTimeout`).toBeDefined();
          expect(duration.parse(t.phaseTimeout), `${file} ${t.name}`).toBeGreaterThan(schedule);
          checked.push(`${file}:${t.name}`);
        }
      }
    }
    expect(checked.length).toBeGreaterThanOrEqual(2);
  });
});
