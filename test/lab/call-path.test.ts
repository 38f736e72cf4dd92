import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import { startLabCoturn } from './coturn.js';
import {
  REPO_ROOT,
  applyCensor,
  clearCensor,
  counters,
  createLab,
  createLabCa,
  describeLab,
  runOnceInLab,
  setElements,
  startEchoServer,
  startNodeServer,
  writeLabConfig,
  type Lab,
  type LabServer,
  type OnceRun,
} from './index.js';

const REFLECTOR_SCRIPT = join(REPO_ROOT, 'test/lab/servers/tg-reflector.ts');
const CLIENT = '198.18.1.2';
/** "Telegram": a call server (coturn on 1400, UDP and TCP) and two reflectors, one network. */
const CALL_SERVER = '198.19.1.37';
const REFLECTOR_OPEN = '198.19.1.10';
const REFLECTOR_STRICT = '198.19.1.40';
/** Domestic controls: on the server's own network, what an allowlist lets through. */
const DOMESTIC_STUN = '198.18.2.10';
const DOMESTIC_TLS = '198.18.2.11';
/** Foreign neutral controls, on a network of their own. */
const FOREIGN_STUN = '198.19.2.20';
const FOREIGN_TLS = '198.19.2.30';
/** A hosting network where one UDP flow makes the censor drop the whole /24 for a while. */
const HOSTING_TRIGGER = '198.19.3.10';
const HOSTING_NEIGHBOUR = '198.19.3.11';
const LINGER_S = 20;

/** STUN requests at 0, 100, 300, 700 ms, silence declared at 1100 ms: four datagrams each way at most. */
const FAST = 'rtoMs: 100, rc: 4, rm: 4';
/** Five hellos 100 ms apart, then 500 ms of waiting. */
const HELLOS = 5;
const REFLECTOR = `{ tg-reflector: { hellos: ${HELLOS}, intervalMs: 100, waitMs: 500 } }`;
/** The unauthenticated Allocate (RFC 8489 header + REQUESTED-TRANSPORT) and coturn 4.6.1's 401 to it. */
const ALLOCATE_BYTES = 28;

const CONTROLS = `service: control
control: true
targets:
  - { name: domestic-stun, host: ${DOMESTIC_STUN}, port: 3478, location: domestic, path: calls, phases: [{ stun: { ${FAST} } }] }
  - { name: domestic-tls, host: ${DOMESTIC_TLS}, port: 443, sni: calls.lab.test, location: domestic, path: calls, phases: [tcp, tls] }
  - { name: foreign-stun, host: ${FOREIGN_STUN}, port: 3478, location: foreign, phases: [{ stun: { ${FAST} } }] }
  - { name: foreign-tls, host: ${FOREIGN_TLS}, port: 443, sni: foreign.lab.test, location: foreign, phases: [tcp, tls] }
`;
const TELEGRAM = `service: telegram
targets:
  - { name: call-stun, host: ${CALL_SERVER}, port: 1400, phases: [{ stun: { purpose: relay-reachability, ${FAST} } }] }
  - { name: call-turn-udp, host: ${CALL_SERVER}, port: 1400, phases: [{ turn-challenge: { ${FAST} } }] }
  - { name: call-turn-tcp, host: ${CALL_SERVER}, port: 1400, phases: [{ turn-challenge: { transport: tcp } }] }
  - { name: reflector-open, host: ${REFLECTOR_OPEN}, port: 596, phases: [${REFLECTOR}] }
  - { name: reflector-strict, host: ${REFLECTOR_STRICT}, port: 597, phases: [${REFLECTOR}] }
`;
const HOSTING = `service: hosting
targets:
  - { name: trigger, host: ${HOSTING_TRIGGER}, port: 3478, phases: [{ stun: { ${FAST} } }] }
  - { name: neighbour, host: ${HOSTING_NEIGHBOUR}, port: 3478, phases: [{ stun: { ${FAST} } }] }
`;

/**
 * The call path through a censor (issue 11): where a Telegram call really goes. In the server
 * namespace: coturn as Telegram's call server on 1400 (it answers an unauthenticated Allocate with
 * 401, REALM and NONCE, over UDP and TCP, as any TURN server must), two reflectors from libtgvoip's
 * published mock (servers/tg-reflector.ts, not our codec), one answering any peer tag and one only
 * tags it was told of; a second coturn standing for the STUN controls and a hosting network; TLS
 * servers for the TLS controls. Each scenario is one `callprobe once` cycle; the cycles share the
 * data directory, so what the vantage learns (which targets answer) carries from one to the next
 * as it does across a daemon's restarts: the scenarios run in order.
 */
describeLab('the call path: call servers, reflectors, domestic and foreign controls', () => {
  let lab: Lab;
  let strict: LabServer;
  const once = (): Promise<OnceRun> =>
    runOnceInLab(lab, {
      catalogues: { 'controls.yaml': CONTROLS, 'telegram.yaml': TELEGRAM },
      extraConfig: 'tls: { extraCa: [ca.pem] }',
      timeoutMs: 40_000,
    });
  const phase = (r: ProbeResult, name: string): ProbeResult['phases'][number] => {
    const p = r.phases.find((x) => x.phase === name);
    if (!p) throw new Error(`${r.target} has no ${name} phase: ${r.phases.map((x) => x.phase).join(', ')}`);
    return p;
  };
  const ledger = (r: ProbeResult, name: string): string[] =>
    (phase(r, name).evidence.ledger as Array<{ dir: string; bytes: number }>).map((l) => `${l.dir} ${l.bytes}`);
  const startReflector = (host: string, port: number, answer: 'any' | 'registered'): Promise<LabServer> =>
    startNodeServer(lab, REFLECTOR_SCRIPT, ['--host', host, '--port', String(port), '--answer', answer]);

  beforeAll(async () => {
    lab = await createLab({
      serverAddresses: [CALL_SERVER, REFLECTOR_OPEN, REFLECTOR_STRICT, DOMESTIC_STUN, DOMESTIC_TLS, FOREIGN_STUN, FOREIGN_TLS, HOSTING_TRIGGER, HOSTING_NEIGHBOUR],
    });
    const ca = await createLabCa(join(lab.tmpDir, 'ca'));
    const [domesticCert, foreignCert] = await Promise.all([
      ca.issue(['calls.lab.test'], { ips: [DOMESTIC_TLS] }),
      ca.issue(['foreign.lab.test'], { ips: [FOREIGN_TLS] }),
    ]);
    writeFileSync(join(lab.tmpDir, 'ca.pem'), ca.caCertPem);
    [, , , , strict] = await Promise.all([
      startLabCoturn(lab, { ip: CALL_SERVER, port: 1400 }),
      startLabCoturn(lab, { ip: DOMESTIC_STUN, alsoListenOn: [FOREIGN_STUN, HOSTING_TRIGGER, HOSTING_NEIGHBOUR], minPort: 40200, maxPort: 40300 }),
      startEchoServer(lab, {
        listeners: [
          { kind: 'tls', name: 'domestic', host: DOMESTIC_TLS, port: 443, cert: domesticCert.certPath, key: domesticCert.keyPath },
          { kind: 'tls', name: 'foreign', host: FOREIGN_TLS, port: 443, cert: foreignCert.certPath, key: foreignCert.keyPath },
        ],
      }),
      startReflector(REFLECTOR_OPEN, 596, 'any'),
      startReflector(REFLECTOR_STRICT, 597, 'registered'),
    ]);
  });
  afterAll(() => lab?.destroy());

  it('clean path: the call server answers the TURN challenge over UDP and TCP, the open reflector its hello; the strict one is silent and not known to answer: error, not blocked', async () => {
    const run = await once();
    for (const name of ['domestic-stun', 'domestic-tls', 'foreign-stun', 'foreign-tls', 'call-stun', 'call-turn-udp', 'call-turn-tcp', 'reflector-open']) {
      expect(run.get(name), name).toMatchObject({ verdict: 'ok', failure: null, scope: null });
    }
    for (const name of ['call-turn-udp', 'call-turn-tcp']) {
      expect(phase(run.get(name), 'turn-challenge').evidence, name).toMatchObject({
        requestBytes: ALLOCATE_BYTES,
        errorCode: 401,
        realm: 'callprobe.test',
        software: "Coturn-4.6.1 'Gorst'",
      });
    }
    expect(run.get('call-turn-tcp').phases.map((p) => p.phase)).toEqual(['tcp', 'turn-challenge']);
    expect(run.get('call-turn-udp')).toMatchObject({ path: 'calls', location: 'foreign' });
    // One request, one answer, nothing else on the flow.
    expect(ledger(run.get('call-turn-udp'), 'turn-challenge')).toEqual([`out ${ALLOCATE_BYTES}`, expect.stringMatching(/^in \d+$/)]);
    expect(phase(run.get('reflector-open'), 'tg-reflector').evidence).toMatchObject({
      reply: 'self-info',
      queryIdEchoed: true,
      answeredAfterHellos: 1,
      seenAs: expect.stringMatching(new RegExp(`^${CLIENT.replaceAll('.', '\\.')}:\\d+$`)),
    });
    expect(ledger(run.get('reflector-open'), 'tg-reflector').slice(0, 2)).toEqual(['out 40', 'in 64']);

    const silent = run.get('reflector-strict');
    expect(silent).toMatchObject({ verdict: 'error', failure: 'generic_timeout_error', failedPhase: 'tg-reflector', scope: null });
    expect(silent.reason).toBe(
      'reflector-strict did not answer, but it has not answered this probe at this vantage before and its catalogue entry does not say it answers: its silence is no evidence of a block',
    );
    expect(ledger(silent, 'tg-reflector')).toEqual(Array(HELLOS).fill('out 40'));
    expect(strict.events().filter((e) => e.event === 'hello').map((e) => e.answered)).toEqual(Array(HELLOS).fill(false));

    // What the vantage learnt is on disk for the next process.
    const learnt = JSON.parse(readFileSync(join(lab.tmpDir, 'data', 'state', 'known-responsive.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(learnt.targets as object).sort()).toEqual([
      'telegram/call-stun',
      'telegram/call-turn-tcp',
      'telegram/call-turn-udp',
      'telegram/reflector-open',
    ]);
  });

  it('UDP to Telegram dropped while the UDP controls answer: blocked (scope service), every request out and nothing in; TCP to the same server still answers', async () => {
    await applyCensor(lab, [`ip daddr 198.19.1.0/24 meta l4proto udp counter drop comment "telegram-udp"`]);
    const run = await once();
    expect(run.get('domestic-stun')).toMatchObject({ verdict: 'ok' });
    const turn = run.get('call-turn-udp');
    expect(turn).toMatchObject({ verdict: 'blocked', scope: 'service', failure: 'generic_timeout_error', failedPhase: 'turn-challenge' });
    expect(turn.control).toMatchObject({ target: 'foreign-stun', phase: 'stun', ok: true, location: 'foreign' });
    expect(turn.reason).toBeUndefined();
    expect(ledger(turn, 'turn-challenge')).toEqual(Array(4).fill(`out ${ALLOCATE_BYTES}`));
    expect(phase(turn, 'turn-challenge').evidence).toMatchObject({ datagramsSent: 4, datagramsReceived: 0, bytesSent: 4 * ALLOCATE_BYTES, bytesReceived: 0 });
    expect(run.get('call-stun')).toMatchObject({ verdict: 'blocked', scope: 'service', failure: 'generic_timeout_error' });
    expect(run.get('reflector-open')).toMatchObject({ verdict: 'blocked', scope: 'service', failure: 'generic_timeout_error' });
    // Never answered here: still only an error.
    expect(run.get('reflector-strict')).toMatchObject({ verdict: 'error', scope: null, failure: 'generic_timeout_error' });
    expect(run.get('call-turn-tcp')).toMatchObject({ verdict: 'ok' });
    // 4 Bindings + 4 Allocates + 5 + 5 hellos, every one dropped.
    expect((await counters(lab))['telegram-udp']!.packets).toBe(4 + 4 + HELLOS + HELLOS);
  });

  it('every UDP datagram dropped, TCP passing: the UDP controls failed too, so the call-server failures are errors (scope network), not blocks', async () => {
    await applyCensor(lab, ['meta l4proto udp counter drop comment "udp"']);
    const run = await once();
    for (const name of ['domestic-stun', 'foreign-stun']) expect(run.get(name), name).toMatchObject({ verdict: 'error', failure: 'generic_timeout_error', failedPhase: 'stun' });
    expect(run.get('domestic-tls')).toMatchObject({ verdict: 'ok' });
    for (const name of ['call-stun', 'call-turn-udp', 'reflector-open', 'reflector-strict']) {
      const r = run.get(name);
      expect(r, name).toMatchObject({ verdict: 'error', scope: 'network', failure: 'generic_timeout_error' });
      expect(r.control, name).toMatchObject({ phase: 'stun', ok: false, failure: 'generic_timeout_error', failedPhase: 'stun' });
      expect(['domestic-stun', 'foreign-stun']).toContain(r.control!.target);
    }
    expect(run.get('call-turn-tcp')).toMatchObject({ verdict: 'ok' });
  });

  it('an allowlist (only the domestic network passes): the call server and the foreign controls fail alike while domestic ones pass: scope foreign', async () => {
    await applyCensor(lab, [`ip saddr ${CLIENT} ip daddr != 198.18.2.0/24 counter drop comment "allowlist"`]);
    const run = await once();
    expect(run.get('domestic-stun')).toMatchObject({ verdict: 'ok' });
    expect(run.get('domestic-tls')).toMatchObject({ verdict: 'ok' });
    expect(run.get('foreign-stun')).toMatchObject({ verdict: 'error', failure: 'generic_timeout_error', failedPhase: 'stun' });
    expect(run.get('foreign-tls')).toMatchObject({ verdict: 'error', failure: 'generic_timeout_error', failedPhase: 'tcp' });
    const udp = run.get('call-turn-udp');
    expect(udp).toMatchObject({ verdict: 'blocked', scope: 'foreign', failure: 'generic_timeout_error', failedPhase: 'turn-challenge' });
    expect(udp.control).toMatchObject({ target: 'domestic-stun', phase: 'stun', ok: true, location: 'domestic' });
    const tcp = run.get('call-turn-tcp');
    expect(tcp).toMatchObject({ verdict: 'blocked', scope: 'foreign', failure: 'generic_timeout_error', failedPhase: 'tcp' });
    expect(tcp.control).toMatchObject({ target: 'domestic-tls', phase: 'tcp', ok: true, location: 'domestic' });
  });

  it('the strict reflector answers once (it opened to strangers), and from then on its silence is a block, also in a new process', async () => {
    await clearCensor(lab);
    await strict.stop();
    strict = await startReflector(REFLECTOR_STRICT, 597, 'any');
    const answered = await once();
    expect(answered.get('reflector-strict')).toMatchObject({ verdict: 'ok', failure: null });

    await applyCensor(lab, [`ip daddr ${REFLECTOR_STRICT} counter drop comment "strict"`]);
    const silent = await once();
    const r = silent.get('reflector-strict');
    expect(r).toMatchObject({ verdict: 'blocked', scope: 'service', failure: 'generic_timeout_error', failedPhase: 'tg-reflector' });
    expect(r.reason).toBeUndefined();
    expect(ledger(r, 'tg-reflector')).toEqual(Array(HELLOS).fill('out 40'));
    expect((await counters(lab)).strict!.packets).toBe(HELLOS);
  });

  it(`a lingering block (one UDP flow to a hosting network drops its whole /24 for ${LINGER_S} s) shows in the next run's record: the probe before it to the same network`, async () => {
    await applyCensor(
      lab,
      [
        'ip daddr & 255.255.255.0 @lingering counter drop comment "lingering"',
        `ip daddr ${HOSTING_TRIGGER} udp dport 3478 add @lingering { ip daddr & 255.255.255.0 timeout ${LINGER_S}s } counter comment "trigger"`,
      ],
      { sets: { lingering: 'type ipv4_addr; flags timeout;' } },
    );
    const dataDir = join(lab.tmpDir, 'daemon-data');
    const config = writeLabConfig(lab, {
      file: 'daemon.yaml',
      catalogues: { 'controls.yaml': CONTROLS, 'hosting.yaml': HOSTING },
      extraConfig: 'tls: { extraCa: [ca.pem] }',
      dataDir,
      schedule: 'interval: 10s, jitter: 0',
    });
    const daemon = lab.spawn('client', process.execPath, ['dist/cli.js', 'run', '--config', config]);
    const recordsDir = join(dataDir, 'records');
    const hosting = (): ProbeResult[] => {
      let files: string[] = [];
      try {
        files = readdirSync(recordsDir).filter((f) => f.endsWith('.jsonl')).sort();
      } catch {
        return [];
      }
      return files
        .flatMap((f) => readFileSync(join(recordsDir, f), 'utf8').split('\n'))
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as ProbeResult)
        .filter((r) => r.service === 'hosting');
    };
    const firstFailure = (): ProbeResult | undefined => hosting().find((r) => r.target === 'neighbour' && r.failure !== null);
    try {
      const deadline = Date.now() + 45_000;
      while (!firstFailure() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
      expect(await setElements(lab, 'lingering')).toEqual(['198.19.3.0']);
    } finally {
      await daemon.kill();
    }
    const records = hosting();
    const trigger = records.find((r) => r.target === 'trigger');
    const failed = firstFailure();
    expect(trigger, daemon.output).toMatchObject({ verdict: 'ok', failure: null });
    expect(failed, JSON.stringify(records.map((r) => [r.target, r.startedAt, r.failure]))).toMatchObject({
      verdict: 'blocked',
      scope: 'service',
      failure: 'generic_timeout_error',
      failedPhase: 'stun',
    });
    // The neighbour failed after the trigger's flow, within the block's time.
    const gapMs = Date.parse(failed!.startedAt) - Date.parse(trigger!.startedAt);
    expect(gapMs).toBeGreaterThan(0);
    expect(gapMs).toBeLessThan(LINGER_S * 1000);
    expect(failed!.sameNetworkBefore).toContainEqual({
      service: 'hosting',
      target: 'trigger',
      startedAt: trigger!.startedAt,
      transport: 'udp',
      failure: null,
      failedPhase: null,
      network: '198.19.3.0/24',
    });
    // The trigger's own first packet passed (it answered); all packets after it to the /24 were dropped.
    const c = await counters(lab);
    expect(c.trigger!.packets).toBe(1);
    expect(c.lingering!.packets).toBeGreaterThanOrEqual(4);
  });
});
