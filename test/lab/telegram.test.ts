import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import { GARBAGE_PAYLOAD, LAB_PQ, type DcListener } from './servers/telegram-dc.js';
import { IP_TCP_HEADERS, REPO_ROOT, applyCensor, counters, createLab, createLabCa, describeLab, runOnceInLab, type OnceRun, startDnsServer, startNodeServer, type Lab, type LabServer, type ServerEvent } from './index.js';

const TELEGRAM_DC_SCRIPT = join(REPO_ROOT, 'test/lab/servers/telegram-dc.ts');
const SERVER = '198.18.2.2';
const FINGERPRINTS = ['0bc35f3509f7b7a5', 'c3b42b026ce86b21', 'd09d1d85de64fd85'];
/** req_pq_multi is 40 bytes; resPQ from the lab DC 100 (see test/phases/mtproto.test.ts). */
const REQUEST = 40;
const RESPQ = 100;

/**
 * Telegram censor scenarios (issue 4): a lab DC (servers/telegram-dc.ts) in the server namespace,
 * one nftables ruleset in the censor, and ONE `callprobe once` cycle in the client namespace whose
 * targets each meet one scenario, so that results that must be compared (intermediate blocked,
 * obfuscated2 through, on the same port) come from the same cycle. Each test asserts the exact
 * phase, code and evidence, and where it matters what the DC and the censor saw.
 */
describeLab('telegram (MTProto) through a censor', () => {
  let lab: Lab;
  let dc: LabServer;
  let once: OnceRun;
  let exitCode: number | null;
  let rules: Record<string, { packets: number; bytes: number }>;

  beforeAll(async () => {
    lab = await createLab();
    const ca = await createLabCa(join(lab.tmpDir, 'ca'));
    const cert = await ca.issue(['venus.lab.test'], { ips: [SERVER] });
    writeFileSync(join(lab.tmpDir, 'ca.pem'), ca.caCertPem);
    await startDnsServer(lab, { records: { 'venus.lab.test': [SERVER] }, zones: ['lab.test'] });

    const tcp = (port: number, mode: DcListener['mode'] = 'ok'): DcListener => ({ kind: 'tcp', name: `dc-${port}`, port, mode });
    const listeners: DcListener[] = [
      tcp(443), // every transport, untouched by the censor
      tcp(80), // the censor resets the abridged tag EF
      tcp(5222), // the censor resets the intermediate tag EEEEEEEE
      tcp(8001), // the censor drops everything after the first client payload
      tcp(8002, 'garbage'),
      tcp(8003, 'wrong_nonce'),
      tcp(8004, 'transport_error'),
      tcp(8005, 'close'),
      { kind: 'ws', name: 'wss', port: 8443, tls: { cert: cert.certPath, key: cert.keyPath }, refuse: { '/refuse': 403 } },
    ];
    dc = await startNodeServer(lab, TELEGRAM_DC_SCRIPT, ['--config', JSON.stringify({ listeners })]);

    await applyCensor(lab, [
      'tcp dport 80 @ih,0,8 0xef counter reject with tcp reset comment "abridged"',
      'tcp dport 5222 @ih,0,32 0xeeeeeeee counter reject with tcp reset comment "intermediate"',
      // SYN, ACK and the first payload pass; the DC's answer (every reply packet after the SYN/ACK)
      // and the client's retransmissions do not.
      'tcp dport 8001 ct original packets > 3 counter drop comment "blackhole-out"',
      'tcp sport 8001 ct reply packets > 1 counter drop comment "blackhole-in"',
    ]);

    const mtproto = (name: string, port: number, params: string, extra = '') =>
      `  - { name: ${name}, host: ${SERVER}, port: ${port}${extra}, phases: [tcp, { mtproto: { ${params}, dc: 2 } }] }\n`;
    const ws = (name: string, path: string) =>
      `  - { name: ${name}, url: "wss://venus.lab.test:8443${path}", phases: [{ websocket: { subprotocols: [binary] } }, { mtproto: { dc: 2 } }] }\n`;
    writeFileSync(
      join(lab.tmpDir, 'telegram.yaml'),
      'service: telegram\ntargets:\n' +
        mtproto('ok-abridged', 443, 'transport: abridged') +
        mtproto('ok-intermediate', 443, 'transport: intermediate') +
        mtproto('ok-padded', 443, 'transport: padded_intermediate') +
        mtproto('ok-full', 443, 'transport: full') +
        mtproto('ok-obfuscated2', 443, 'transport: obfuscated2') +
        mtproto('ok-obfuscated2-padded', 443, 'transport: obfuscated2, inner: padded_intermediate') +
        ws('ok-wss', '/apiws') +
        mtproto('rst-abridged', 80, 'transport: abridged') +
        mtproto('blocked-intermediate', 5222, 'transport: intermediate') +
        mtproto('passes-obfuscated2', 5222, 'transport: obfuscated2') +
        mtproto('blackhole', 8001, 'transport: intermediate', ', phaseTimeout: 2s') +
        mtproto('garbage', 8002, 'transport: intermediate') +
        mtproto('wrong-nonce', 8003, 'transport: obfuscated2') +
        mtproto('transport-error', 8004, 'transport: full') +
        mtproto('eof', 8005, 'transport: abridged') +
        ws('ws-refused', '/refuse'),
    );
    // The domestic control (docs/architecture.md#verdicts): TCP to the same server proves the network under every DC target.
    writeFileSync(
      join(lab.tmpDir, 'controls.yaml'),
      'service: control\ncontrol: true\ntargets:\n' +
        `  - { name: lab-tcp, host: ${SERVER}, port: 443, phases: [tcp] }\n` +
        '  - { name: lab-tls, host: venus.lab.test, port: 8443, phases: [dns, tcp, tls] }\n',
    );
    const run = await runOnceInLab(lab, {
      catalogueFiles: ['telegram.yaml', 'controls.yaml'],
      concurrency: 16,
      phaseTimeout: '3s',
      resolver: SERVER,
      extraConfig: 'tls: { extraCa: [ca.pem] }',
    });
    exitCode = run.code;
    once = run;
    rules = await counters(lab);
  }, 90_000);
  afterAll(() => lab?.destroy());

  const get = (name: string): ProbeResult => once.get(name);
  const mtprotoOf = (r: ProbeResult) => r.phases.find((p) => p.phase === 'mtproto')!;
  /** The DC's request and answer events for the connection that carried this nonce. */
  const atDc = (nonceHex: unknown): { request: ServerEvent; answer: ServerEvent } => {
    const events = dc.events();
    const request = events.find((e) => e.event === 'request' && e.nonceHex === nonceHex);
    if (!request) throw new Error(`the lab DC saw no request with nonce ${String(nonceHex)}`);
    const answer = events.find((e) => e.event === 'answer' && e.peer === request.peer && e.listener === request.listener)!;
    return { request, answer };
  };
  const requestsOn = (listener: string) => dc.events().filter((e) => e.event === 'request' && e.listener === listener);
  // Either control's TCP phase vouches (both connect to the lab server); which one is recorded first is a race.
  const blockedAgainstTcpControl = { verdict: 'blocked', control: { target: expect.stringMatching(/^lab-(tcp|tls)$/), phase: 'tcp', ok: true } };

  it('runs the controls first and exits 1 because probes failed', () => {
    expect(exitCode).toBe(1);
    expect(get('lab-tcp')).toMatchObject({ service: 'control', verdict: 'ok', failure: null });
    expect(get('lab-tls')).toMatchObject({ service: 'control', verdict: 'ok', failure: null });
    expect(once.results.size).toBe(18);
  });

  it.each([
    { target: 'ok-abridged', transport: 'abridged', sent: 1 + 1 + REQUEST, received: 1 + RESPQ },
    { target: 'ok-intermediate', transport: 'intermediate', sent: 4 + 4 + REQUEST, received: 4 + RESPQ },
    { target: 'ok-full', transport: 'full', sent: 12 + REQUEST, received: 12 + RESPQ },
    { target: 'ok-obfuscated2', transport: 'obfuscated2', sent: 64 + 4 + REQUEST, received: 4 + RESPQ },
  ])('OK over $transport: resPQ for our nonce, byte counts as the DC saw them', ({ target, transport, sent, received }) => {
    const r = get(target);
    expect(r).toMatchObject({ verdict: 'ok', failure: null });
    expect(r.phases.map((p) => [p.phase, p.ok, p.transport])).toEqual([
      ['tcp', true, 'tcp'],
      ['mtproto', true, 'tcp'],
    ]);
    const e = mtprotoOf(r).evidence;
    expect(e).toMatchObject({ mtprotoTransport: transport, dc: 2, bytesSent: sent, bytesReceived: received, pqHex: LAB_PQ.toString('hex'), fingerprints: FINGERPRINTS });
    const { request, answer } = atDc(e.nonceHex);
    expect(request).toMatchObject({ listener: 'dc-443', transport, bytesIn: sent, peer: expect.stringMatching(/^198\.18\.1\.2:/) });
    expect(answer).toMatchObject({ mode: 'ok', bytesOut: received, serverNonceHex: e.serverNonceHex });
  });

  it.each([
    { target: 'ok-padded', transport: 'padded_intermediate', inner: undefined },
    { target: 'ok-obfuscated2-padded', transport: 'obfuscated2', inner: 'padded_intermediate' },
  ])('OK on $target: random padding, counted exactly as the DC saw it', ({ target, transport, inner }) => {
    const r = get(target);
    expect(r).toMatchObject({ verdict: 'ok', failure: null });
    const e = mtprotoOf(r).evidence;
    expect(e).toMatchObject({ mtprotoTransport: transport, fingerprints: FINGERPRINTS, ...(inner ? { obfuscated2Inner: inner } : {}) });
    const { request, answer } = atDc(e.nonceHex);
    expect(request).toMatchObject({ listener: 'dc-443', transport, bytesIn: e.bytesSent, ...(inner ? { inner, dcId: 2 } : {}) });
    expect(answer).toMatchObject({ bytesOut: e.bytesReceived, serverNonceHex: e.serverNonceHex });
    const header = inner ? 64 : 4;
    expect(e.bytesSent).toBeGreaterThanOrEqual(header + 4 + REQUEST);
    expect(e.bytesSent).toBeLessThanOrEqual(header + 4 + REQUEST + 15);
  });

  it('OK over WebSocket over TLS with the lab CA: dns > tcp > tls > websocket > mtproto, obfuscated2', () => {
    const r = get('ok-wss');
    expect(r).toMatchObject({ verdict: 'ok', failure: null });
    expect(r.phases.map((p) => [p.phase, p.ok, p.transport])).toEqual([
      ['dns', true, 'udp'],
      ['tcp', true, 'tcp'],
      ['tls', true, 'tls'],
      ['websocket', true, 'wss'],
      ['mtproto', true, 'wss'],
    ]);
    expect(r.phases[3]!.evidence).toMatchObject({ status: 101, subprotocol: 'binary' });
    const m = mtprotoOf(r);
    expect(m.endpoint).toBe('wss://venus.lab.test:8443/apiws');
    expect(m.evidence).toMatchObject({ mtprotoTransport: 'obfuscated2', obfuscated2Inner: 'intermediate', bytesSent: 64 + 4 + REQUEST, bytesReceived: 4 + RESPQ, fingerprints: FINGERPRINTS });
    expect(atDc(m.evidence.nonceHex).request).toMatchObject({ listener: 'wss', transport: 'obfuscated2', dcId: 2 });
  });

  it('RST injected after the abridged tag EF: connection_reset at mtproto, the DC never saw the request', () => {
    const r = get('rst-abridged');
    expect(r).toMatchObject({ failure: 'connection_reset', failedPhase: 'mtproto', ...blockedAgainstTcpControl });
    expect(r.phases[0]).toMatchObject({ phase: 'tcp', ok: true });
    expect(mtprotoOf(r).evidence).toMatchObject({ error: 'ECONNRESET', mtprotoTransport: 'abridged', bytesSent: 1 + 1 + REQUEST, bytesReceived: 0 });
    expect(rules.abridged).toMatchObject({ packets: 1, bytes: 1 + 1 + REQUEST + IP_TCP_HEADERS });
    expect(requestsOn('dc-80')).toEqual([]);
  });

  it('intermediate blocked while obfuscated2 passes, same port, same cycle: the evidence shows the difference', () => {
    const blocked = get('blocked-intermediate');
    const passes = get('passes-obfuscated2');
    expect(blocked).toMatchObject({ failure: 'connection_reset', failedPhase: 'mtproto', ...blockedAgainstTcpControl });
    expect(passes).toMatchObject({ verdict: 'ok', failure: null });
    expect(mtprotoOf(blocked).evidence).toMatchObject({ mtprotoTransport: 'intermediate', error: 'ECONNRESET', bytesSent: 48, bytesReceived: 0 });
    expect(mtprotoOf(blocked).evidence.firstBytesHex).toBeUndefined();
    expect(mtprotoOf(passes).evidence).toMatchObject({ mtprotoTransport: 'obfuscated2', bytesSent: 108, bytesReceived: 104, fingerprints: FINGERPRINTS });
    // One packet hit the rule (the intermediate request); the DC on 5222 answered only the obfuscated one.
    expect(rules.intermediate).toMatchObject({ packets: 1, bytes: 48 + IP_TCP_HEADERS });
    expect(requestsOn('dc-5222').map((e) => [e.transport, e.nonceHex])).toEqual([['obfuscated2', mtprotoOf(passes).evidence.nonceHex]]);
    // Both from the one cycle: less than the cycle's duration apart.
    expect(Math.abs(Date.parse(blocked.startedAt) - Date.parse(passes.startedAt))).toBeLessThan(10_000);
  });

  it('everything dropped after the first client payload: generic_timeout_error at mtproto, bytes sent kept', () => {
    const r = get('blackhole');
    expect(r).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'mtproto', ...blockedAgainstTcpControl });
    expect(mtprotoOf(r).evidence).toMatchObject({ timeoutMs: 2000, mtprotoTransport: 'intermediate', bytesSent: 4 + 4 + REQUEST, bytesReceived: 0 });
    // The request reached the DC and the DC answered: the censor swallowed the answer.
    const { request, answer } = atDc(mtprotoOf(r).evidence.nonceHex);
    expect(request).toMatchObject({ listener: 'dc-8001', bytesIn: 48 });
    expect(answer).toMatchObject({ mode: 'ok', bytesOut: 104 });
    expect(rules['blackhole-in']!.packets).toBeGreaterThanOrEqual(1);
    expect(rules['blackhole-out']!.packets).toBeGreaterThanOrEqual(1); // the client's retransmissions
  });

  it('the server answers garbage: proto_malformed, with the bytes that came back', () => {
    const r = get('garbage');
    expect(r).toMatchObject({ failure: 'proto_malformed', failedPhase: 'mtproto', ...blockedAgainstTcpControl });
    expect(mtprotoOf(r).evidence).toMatchObject({
      bytesSent: 48,
      bytesReceived: 4 + GARBAGE_PAYLOAD.length,
      firstBytesHex: `20000000${GARBAGE_PAYLOAD.toString('hex')}`,
      authKeyIdHex: Buffer.from(GARBAGE_PAYLOAD.subarray(0, 8)).reverse().toString('hex'),
    });
  });

  it('the server echoes a wrong nonce: proto_mismatch, with both nonces', () => {
    const r = get('wrong-nonce');
    expect(r).toMatchObject({ failure: 'proto_mismatch', failedPhase: 'mtproto', ...blockedAgainstTcpControl });
    const e = mtprotoOf(r).evidence;
    const inverted = Buffer.from(Buffer.from(e.nonceHex as string, 'hex').map((b) => b ^ 0xff)).toString('hex');
    expect(e).toMatchObject({ mtprotoTransport: 'obfuscated2', expectedNonceHex: e.nonceHex, receivedNonceHex: inverted, bytesReceived: 4 + RESPQ });
    expect(atDc(e.nonceHex).answer).toMatchObject({ listener: 'dc-8003', mode: 'wrong_nonce' });
  });

  it('the server sends transport error -404: proto_error with the code', () => {
    const r = get('transport-error');
    expect(r).toMatchObject({ failure: 'proto_error', failedPhase: 'mtproto', ...blockedAgainstTcpControl });
    // A full-transport frame: length 16 | seq 0 | 6C FE FF FF | CRC32.
    expect(mtprotoOf(r).evidence).toMatchObject({ transportError: -404, transportErrorFramed: true, bytesSent: 12 + REQUEST, bytesReceived: 16 });
    expect((mtprotoOf(r).evidence.firstBytesHex as string).slice(0, 24)).toBe('10000000000000006cfeffff');
  });

  it('the server closes before answering: eof_error', () => {
    const r = get('eof');
    expect(r).toMatchObject({ failure: 'eof_error', failedPhase: 'mtproto', ...blockedAgainstTcpControl });
    expect(mtprotoOf(r).evidence).toMatchObject({ bytesSent: 42, bytesReceived: 0 });
  });

  it('WebSocket upgrade refused: ws_bad_status at websocket, mtproto skipped, blocked against the TLS control', () => {
    const r = get('ws-refused');
    expect(r).toMatchObject({ failure: 'ws_bad_status', failedPhase: 'websocket', verdict: 'blocked', control: { target: 'lab-tls', phase: 'tls', ok: true } });
    expect(r.phases[3]!.evidence).toMatchObject({ status: 403, server: 'lab-dc' });
    expect(r.phases[4]).toMatchObject({ phase: 'mtproto', skipped: true });
  });
});
