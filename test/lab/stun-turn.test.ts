import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import { startLabCoturn, type Coturn } from './coturn.js';
import {
  REPO_ROOT,
  applyCensor,
  counters,
  createLab,
  createLabCa,
  describeLab,
  runOnceInLab,
  startNodeServer,
  type Lab,
  type OnceRun,
} from './index.js';

const NODE_STUN_SCRIPT = join(REPO_ROOT, 'test/lab/servers/node-stun-server.ts');
const WERIFT_SCRIPT = join(REPO_ROOT, 'test/lab/clients/werift-turn.ts');
const SERVER = '198.18.2.2';
const CLIENT = '198.18.1.2';
/** coturn's certificate names the lab server by name and address; TLS targets ask for the name. */
const TLS_NAME = 'turn.lab.test';
/** node-stun needs two addresses (RFC 3489 CHANGE-REQUEST); it is also the STUN control, on 19302 like Google's. */
const CLASSIC = ['198.18.2.3', '198.18.2.4'] as const;
/** Distinctive credentials, so a leak anywhere in the output would be found. */
const USER = 'lab-user-7f3a';
const PASSWORD = 'lab-pass-9c1e5';
/** Short STUN timer for the lab: requests at 0, 100, 300, 700 ms, timeout at 1100 ms. */
const FAST = '{ rtoMs: 100, rc: 4, rm: 4 }';
const FAST_SCHEDULE_MS = 1100;

const CONTROLS = `service: control
control: true
targets:
  - { name: stun-control, host: ${CLASSIC[0]}, port: 19302, phases: [{ stun: ${FAST} }] }
`;
const stunTarget = (name: string, host: string, port: number, extra = ''): string =>
  `  - { name: ${name}, host: ${host}, port: ${port}, sni: ${TLS_NAME}, phases: [{ stun: { rtoMs: 100, rc: 4, rm: 4${extra} } }] }\n`;
const STUN_TARGETS = {
  'coturn-udp': stunTarget('coturn-udp', SERVER, 3478),
  'coturn-tcp': stunTarget('coturn-tcp', SERVER, 3478, ', transport: tcp'),
  'coturn-tls': stunTarget('coturn-tls', SERVER, 5349, ', transport: tls'),
  // The RFC 3489 form carries no magic cookie: what a cookie-matching censor lets through.
  'coturn-classic': stunTarget('coturn-classic', SERVER, 3478, ', classic: true'),
  'node-stun': stunTarget('node-stun', CLASSIC[0], 19302),
  'node-stun-classic': stunTarget('node-stun-classic', CLASSIC[0], 19302, ', classic: true'),
};
type StunTarget = keyof typeof STUN_TARGETS;
const stunCatalogue = (names: StunTarget[]): string => `service: stun-lab\ntargets:\n${names.map((n) => STUN_TARGETS[n]).join('')}`;

const turnEntry = (name: string, port: number, transport: string, password = PASSWORD): string =>
  `  - { name: ${name}, host: ${SERVER}, port: ${port}, transport: ${transport}, sni: ${TLS_NAME}, username: ${USER}, password: ${password}, timeout: 8s }\n`;
const TURN_ENTRIES = {
  udp: turnEntry('udp', 3478, 'udp'),
  tcp: turnEntry('tcp', 3478, 'tcp'),
  tls: turnEntry('tls', 5349, 'tls'),
  'wrong-password': turnEntry('wrong-password', 3478, 'udp', 'not-the-password'),
  forbidden: turnEntry('forbidden', 3480, 'udp'),
  quota: turnEntry('quota', 3481, 'udp'),
};
type TurnName = keyof typeof TURN_ENTRIES;
const turnConfig = (names: TurnName[]): string => `tls: { extraCa: [ca.pem] }\nturn:\n${names.map((n) => TURN_ENTRIES[n]).join('')}`;

const STEPS = ['challenge', 'allocate', 'createPermission', 'peerToClient', 'channelBind', 'roundTrip', 'release'];

/**
 * STUN and TURN through the censor (issue 6), against real servers in the server namespace:
 * coturn 4.6.1 three times (the main one with UDP/TCP 3478 and TLS 5349; one refusing our peer
 * address; one with a quota of one allocation per user) and node-stun, a classic RFC 3489 server
 * on two addresses, which is also the STUN control. Each scenario is one `callprobe once` cycle in
 * the client namespace; werift-ice and coturn's own turnutils clients cross-check the results.
 */
describeLab('STUN and TURN through a censor (coturn, node-stun, werift-ice)', () => {
  let lab: Lab;
  let main: Coturn;
  const once = async (opts: { stun?: StunTarget[]; turn?: TurnName[] }): Promise<OnceRun> => {
    const catalogues: Record<string, string> = { 'controls.yaml': CONTROLS };
    if (opts.stun) catalogues['stun-lab.yaml'] = stunCatalogue(opts.stun);
    return runOnceInLab(lab, { catalogues, extraConfig: opts.turn ? turnConfig(opts.turn) : '', timeoutMs: 40_000 });
  };
  const evidence = (r: ProbeResult, phase: string): Record<string, unknown> => r.phases.find((p) => p.phase === phase)!.evidence;

  beforeAll(async () => {
    lab = await createLab({ serverAddresses: [...CLASSIC] });
    const ca = await createLabCa(join(lab.tmpDir, 'ca'));
    const cert = await ca.issue([TLS_NAME], { ips: [SERVER] });
    writeFileSync(join(lab.tmpDir, 'ca.pem'), ca.caCertPem);
    const users: Array<[string, string]> = [[USER, PASSWORD]];
    // A nonce lives 2 s: a run that takes longer (the relay_timeout one) meets a real 438 Stale Nonce.
    [main] = await Promise.all([
      startLabCoturn(lab, { ip: SERVER, tls: { certPath: cert.certPath, keyPath: cert.keyPath }, users, staleNonce: 2 }),
      startNodeServer(lab, NODE_STUN_SCRIPT, ['--primary', CLASSIC[0], '--secondary', CLASSIC[1], '--port', '19302', '--port2', '19303']),
      startLabCoturn(lab, { ip: SERVER, port: 3480, minPort: 40200, maxPort: 40300, users, deniedPeerIps: [CLIENT] }),
      startLabCoturn(lab, { ip: SERVER, port: 3481, minPort: 40400, maxPort: 40500, users, userQuota: 1 }),
    ]);
  });
  afterAll(() => lab?.destroy());

  let baseline: OnceRun;
  it('without a censor: STUN over UDP, TCP and TLS to coturn, classic answers from node-stun, TURN relays over UDP, TCP and TLS', async () => {
    // werift-ice holds the only allocation the quota server allows this user (and does not release it).
    const holder = lab.spawnNode('client', WERIFT_SCRIPT, ['--server', SERVER, '--port', '3481', '--user', USER, '--password', PASSWORD, '--hold']);
    await holder.waitForLine(/^READY /, 10_000);
    baseline = await once({ stun: Object.keys(STUN_TARGETS) as StunTarget[], turn: Object.keys(TURN_ENTRIES) as TurnName[] });
    await holder.kill();

    const control = baseline.get('stun-control');
    expect(control).toMatchObject({ service: 'control', verdict: 'ok', failure: null });

    for (const [name, transport] of [
      ['coturn-udp', 'udp'],
      ['coturn-tcp', 'tcp'],
      ['coturn-tls', 'tls'],
    ] as const) {
      const r = baseline.get(name);
      expect(r, name).toMatchObject({ verdict: 'ok', failure: null });
      const stun = r.phases.find((p) => p.phase === 'stun')!;
      expect(stun.transport).toBe(transport);
      expect(stun.evidence, name).toMatchObject({
        software: "Coturn-4.6.1 'Gorst'",
        magicCookie: true,
        classicAnswer: false,
        mappedAttribute: 'XOR-MAPPED-ADDRESS',
        mappedEqualsLocal: true,
        behindNat: false,
        retransmissions: 0,
        bytesSent: 20,
      });
      expect(stun.evidence.mappedAddress).toMatch(new RegExp(`^${CLIENT}:\\d+$`));
    }
    expect(baseline.get('coturn-tls').phases.map((p) => p.phase)).toEqual(['tcp', 'tls', 'stun']);

    // node-stun speaks RFC 3489 only: it echoes our 16 header bytes (cookie included) and answers
    // with MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS, no SOFTWARE.
    expect(evidence(baseline.get('node-stun'), 'stun')).toMatchObject({
      classicAnswer: true,
      magicCookie: true,
      mappedAttribute: 'MAPPED-ADDRESS',
      mappedEqualsLocal: true,
      software: null,
      responseAttributes: ['MAPPED-ADDRESS', 'CHANGED-ADDRESS', 'SOURCE-ADDRESS'],
    });
    expect(evidence(baseline.get('node-stun-classic'), 'stun')).toMatchObject({ classicAnswer: true, magicCookie: false, mappedEqualsLocal: true });
    expect(evidence(baseline.get('coturn-classic'), 'stun')).toMatchObject({
      classicAnswer: true,
      magicCookie: false,
      software: "Coturn-4.6.1 'Gorst'",
    });

    for (const [name, transport, phases] of [
      ['udp', 'udp', ['turn']],
      ['tcp', 'tcp', ['tcp', 'turn']],
      ['tls', 'tls', ['tcp', 'tls', 'turn']],
    ] as const) {
      const r = baseline.get(name);
      expect(r, name).toMatchObject({ service: 'turn', verdict: 'ok', failure: null });
      expect(r.phases.map((p) => p.phase)).toEqual(phases);
      const turn = r.phases.at(-1)!;
      expect(turn.transport).toBe(transport);
      const e = turn.evidence;
      expect(Object.keys(e.steps as object), name).toEqual(STEPS);
      expect(e).toMatchObject({ released: true, realm: 'callprobe.test', mappedAddress: e.localAddress, peerAddress: expect.stringMatching(new RegExp(`^${CLIENT}:`)) });
      const port = Number(/^198\.18\.2\.2:(\d+)$/.exec(e.relayedAddress as string)![1]);
      expect(port).toBeGreaterThanOrEqual(main.minPort);
      expect(port).toBeLessThanOrEqual(main.maxPort);
    }

    expect(baseline.get('wrong-password')).toMatchObject({ failure: 'turn_unauthorized', failedPhase: 'turn' });
    expect(evidence(baseline.get('wrong-password'), 'turn')).toMatchObject({ errorCode: 401, errorMethod: 'Allocate', failedStep: 'allocate' });
    expect(baseline.get('forbidden')).toMatchObject({ failure: 'turn_forbidden', failedPhase: 'turn' });
    expect(evidence(baseline.get('forbidden'), 'turn')).toMatchObject({
      errorCode: 403,
      errorMethod: 'CreatePermission',
      failedStep: 'createPermission',
      released: true,
    });
    expect(baseline.get('quota')).toMatchObject({ failure: 'turn_quota', failedPhase: 'turn' });
    expect(evidence(baseline.get('quota'), 'turn')).toMatchObject({ errorCode: 486, errorMethod: 'Allocate', failedStep: 'allocate' });

    // Credentials never reach the output (records are these lines) nor the logs.
    const output = JSON.stringify([...baseline.results.values()]) + baseline.stderr;
    expect(output).not.toContain(USER);
    expect(output).not.toContain(PASSWORD);
  });

  it('werift-ice and turnutils, independent clients, see what callprobe reported on the same coturn', async () => {
    const ours = evidence(baseline.get('udp'), 'turn');
    const werift = lab.spawnNode('client', WERIFT_SCRIPT, ['--server', SERVER, '--port', '3478', '--user', USER, '--password', PASSWORD, '--peer', CLIENT]);
    const theirs = JSON.parse((await werift.waitForLine(/^READY /, 10_000)).slice(6)) as {
      relayed: string;
      mapped: string;
      realm: string;
      peerReceived: { data: string; from: string };
    };
    await werift.exited;
    expect(theirs.realm).toBe(ours.realm);
    expect(theirs.mapped.split(':')[0]).toBe((ours.mappedAddress as string).split(':')[0]);
    expect(theirs.relayed.split(':')[0]).toBe((ours.relayedAddress as string).split(':')[0]);
    expect(theirs.peerReceived).toEqual({ data: 'werift-through-coturn', from: theirs.relayed });

    const stunclient = await lab.run('client', 'turnutils_stunclient', ['-p', '3478', SERVER], { timeoutMs: 10_000 });
    const reflexive = /UDP reflexive addr: ([\d.]+):\d+/.exec(stunclient.stdout + stunclient.stderr);
    expect(reflexive?.[1]).toBe((evidence(baseline.get('coturn-udp'), 'stun').mappedAddress as string).split(':')[0]);

    const uclient = await lab.run('client', 'turnutils_uclient', ['-p', '3478', '-u', USER, '-w', PASSWORD, '-y', '-n', '5', '-z', '5', SERVER], {
      timeoutMs: 20_000,
    });
    expect(uclient.stdout + uclient.stderr).toMatch(/Total lost packets 0 \(0\.0+%\)/);
  });

  it('the censor drops UDP to 3478: generic_timeout_error at stun after every retransmission, blocked against the control; TCP passes', async () => {
    await applyCensor(lab, [`ip daddr ${SERVER} udp dport 3478 counter drop comment "udp-3478"`]);
    const run = await once({ stun: ['coturn-udp', 'coturn-tcp'] });
    const udp = run.get('coturn-udp');
    expect(udp).toMatchObject({
      verdict: 'blocked',
      failure: 'generic_timeout_error',
      failedPhase: 'stun',
      control: { target: 'stun-control', phase: 'stun', ok: true },
    });
    const e = evidence(udp, 'stun');
    expect(e).toMatchObject({ requestsSent: 4, retransmissions: 3, waitedMs: FAST_SCHEDULE_MS, datagramsSent: 4, datagramsReceived: 0, bytesSent: 80 });
    expect((e.attempts as unknown[]).length).toBe(4);
    expect(run.get('coturn-tcp')).toMatchObject({ verdict: 'ok', failure: null });
    expect((await counters(lab))['udp-3478']!.packets).toBe(4);
  });

  it('the censor drops only datagrams carrying the STUN magic cookie: RFC 8489 STUN times out, the cookie-less RFC 3489 form passes', async () => {
    await applyCensor(lab, ['udp dport 3478 @ih,32,32 0x2112a442 counter drop comment "cookie"']);
    const run = await once({ stun: ['coturn-udp', 'coturn-classic'] });
    expect(run.get('coturn-udp')).toMatchObject({ verdict: 'blocked', failure: 'generic_timeout_error', failedPhase: 'stun' });
    expect(evidence(run.get('coturn-udp'), 'stun')).toMatchObject({ requestsSent: 4, retransmissions: 3 });
    // Same server, same port, same UDP: without the cookie the request goes through and is answered.
    expect(run.get('coturn-classic')).toMatchObject({ verdict: 'ok', failure: null });
    expect(evidence(run.get('coturn-classic'), 'stun')).toMatchObject({ magicCookie: false, classicAnswer: true, retransmissions: 0, datagramsReceived: 1 });
    expect((await counters(lab)).cookie!.packets).toBe(4);
  });

  it('relayed data dropped between the relay ports and the peer: relay_timeout over UDP, TCP and TLS, and each allocation is released', async () => {
    await applyCensor(lab, [
      `udp dport ${main.minPort}-${main.maxPort} counter drop comment "to-relay"`,
      `udp sport ${main.minPort}-${main.maxPort} counter drop comment "from-relay"`,
    ]);
    const run = await once({ turn: ['udp', 'tcp', 'tls'] });
    let peerSent = 0;
    for (const name of ['udp', 'tcp', 'tls']) {
      const r = run.get(name);
      expect(r, name).toMatchObject({ verdict: 'blocked', failure: 'relay_timeout', failedPhase: 'turn', control: { target: 'stun-control', ok: true } });
      const e = evidence(r, 'turn');
      expect(e, name).toMatchObject({
        failedStep: 'peerToClient',
        relayDirection: 'peer-to-client',
        released: true,
        // The release came > 2 s after the challenge's nonce: coturn said 438 once, callprobe retried.
        staleNonceRetries: 1,
      });
      expect(Object.keys(e.steps as object)).toEqual(['challenge', 'allocate', 'createPermission', 'peerToClient', 'release']);
      expect((e.steps as Record<string, { ok: boolean }>).release!.ok).toBe(true);
      expect(e.relayedAddress).toMatch(/^198\.18\.2\.2:4\d{4}$/);
      const relay = e.relay as { peerSent: number; clientReceived: number };
      expect(relay.clientReceived).toBe(0);
      peerSent += relay.peerSent;
    }
    // Every datagram the peers sent towards the relays died at the censor, and nothing came back.
    const c = await counters(lab);
    expect(c['to-relay']!.packets).toBe(peerSent);
    expect(c['from-relay']!.packets).toBe(0);
  });
});
