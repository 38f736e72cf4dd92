import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import {
  applyCensor,
  countToServer,
  counters,
  createLab,
  createLabCa,
  describeLab,
  runOnceInLab,
  startDnsServer,
  startEchoServer,
  type Lab,
} from './index.js';

/**
 * The foundation's censor scenarios (issue 3): one lab, one censor ruleset, one `callprobe once`
 * cycle run in the client namespace, and an exact assertion per target.
 */
describeLab('foundation scenarios through a censor', () => {
  let lab: Lab;
  let get: (target: string) => ProbeResult;
  let exitCode: number | null;
  let rules: Record<string, { packets: number; bytes: number }>;

  const DENIED = '198.18.2.3'; // a second server address that the probe's allowlist refuses

  beforeAll(async () => {
    lab = await createLab({ serverAddresses: [DENIED] });
    const ca = await createLabCa(join(lab.tmpDir, 'ca'));
    const good = await ca.issue(['tls.lab.test', 'ws.lab.test'], { ips: ['198.18.2.2'] });
    const other = await ca.issue(['other.lab.test']);
    writeFileSync(join(lab.tmpDir, 'ca.pem'), ca.caCertPem);
    await startDnsServer(lab, {
      records: { 'tls.lab.test': ['198.18.2.2'], 'ws.lab.test': ['198.18.2.2'], 'bogon.lab.test': ['10.10.34.35'] },
      noAnswer: ['slow.lab.test'],
      zones: ['lab.test'],
    });
    const tls = (port: number, cert: { certPath: string; keyPath: string }) => ({ kind: 'tls', port, cert: cert.certPath, key: cert.keyPath });
    await startEchoServer(lab, {
      listeners: [
        { kind: 'tcp', port: 7000 },
        { kind: 'tcp', port: 9999, host: DENIED },
        tls(8443, good),
        tls(8444, good),
        tls(8445, good),
        tls(8446, other),
        { kind: 'ws', port: 8080, refuse: { '/refuse': 403 } },
        { kind: 'ws', port: 8447, tls: { cert: good.certPath, key: good.keyPath } },
      ],
    });
    await applyCensor(lab, [
      countToServer('10.10.34.35', 'bogon'),
      `ip daddr ${DENIED} counter comment "denied"`,
      'tcp dport 7001 tcp flags syn counter drop comment "syn-drop"',
      'tcp dport 7002 tcp flags syn counter reject with tcp reset comment "syn-rst"',
      // 0x16 is a TLS handshake record: the ClientHello is the first payload byte.
      'tcp dport 8444 @ih,0,8 0x16 counter drop comment "hello-drop"',
      'tcp dport 8445 @ih,0,8 0x16 counter reject with tcp reset comment "hello-rst"',
    ]);

    const target = (name: string, where: string, phases: string) => `  - name: ${name}\n    ${where}\n    phases: ${phases}\n`;
    const run = await runOnceInLab(lab, {
      catalogues: {
        'lab.yaml':
          'service: lab\ntargets:\n' +
          target('nxdomain', 'host: missing.lab.test\n    port: 8443', '[dns, tcp]') +
          target('bogon', 'host: bogon.lab.test\n    port: 8443', '[dns, tcp]') +
          target('dns-timeout', 'host: slow.lab.test\n    port: 8443', '[{ dns: { retransmitMs: 1200 } }, tcp]') +
          target('syn-drop', 'host: 198.18.2.2\n    port: 7001', '[tcp]') +
          target('syn-rst', 'host: 198.18.2.2\n    port: 7002', '[tcp]') +
          target('hello-rst', 'host: tls.lab.test\n    port: 8445', '[dns, tcp, tls]') +
          target('hello-drop', 'host: tls.lab.test\n    port: 8444', '[dns, tcp, tls]') +
          target('wrong-name', 'host: tls.lab.test\n    port: 8446', '[dns, tcp, tls]') +
          target('ws-refused', 'url: ws://198.18.2.2:8080/refuse', '[websocket]') +
          target('denied', `host: ${DENIED}\n    port: 9999`, '[tcp]') +
          target('full-path', 'url: wss://ws.lab.test:8447/chat', '[dns, tcp, tls, websocket]'),
        'controls.yaml': 'service: control\ncontrol: true\ntargets:\n' + target('domestic', 'host: tls.lab.test\n    port: 8443', '[dns, tcp, tls]'),
      },
      deny: [`${DENIED}/32`],
      extraConfig: 'tls: { extraCa: [ca.pem] }',
    });
    exitCode = run.code;
    get = run.get;
    rules = await counters(lab);
  }, 90_000);
  afterAll(() => lab?.destroy());


  it('runs the control first and exits 1 because probes failed', () => {
    expect(exitCode).toBe(1);
    expect(get('domestic')).toMatchObject({ service: 'control', verdict: 'ok', failure: null });
  });

  it('NXDOMAIN: dns_nxdomain_error at dns, blocked against the control', () => {
    const r = get('nxdomain');
    expect(r).toMatchObject({ failure: 'dns_nxdomain_error', failedPhase: 'dns', verdict: 'blocked', control: { target: 'domestic', phase: 'dns', ok: true } });
    expect(r.phases[0]!.evidence).toMatchObject({ rcode: 'NXDOMAIN', query: 'missing.lab.test', addresses: [] });
    expect(r.phases[1]).toMatchObject({ phase: 'tcp', skipped: true });
  });

  it('bogon answer: dns_bogon_error, and not one packet toward the bogon', () => {
    const r = get('bogon');
    expect(r).toMatchObject({ failure: 'dns_bogon_error', failedPhase: 'dns' });
    expect(r.phases[0]!.evidence).toMatchObject({ bogons: ['10.10.34.35'], rule: 'special-purpose 10.0.0.0/8 (private)' });
    expect(rules.bogon!.packets).toBe(0);
  });

  it('DNS timeout: generic_timeout_error at dns after retransmitting', () => {
    const r = get('dns-timeout');
    expect(r).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'dns' });
    // A and AAAA at 0 s and again at 1.2 s; then the 2 s phase timeout (a retransmission due at the
    // very moment of the timeout would make the count a race between two timers).
    expect(r.phases[0]!.evidence).toMatchObject({ timeoutMs: 2000, unanswered: ['A', 'AAAA'], bytesReceived: 0 });
    expect(r.phases[0]!.evidence.bytesSent).toBe(4 * (12 + 'slow.lab.test'.length + 2 + 4));
  });

  it('SYN dropped: generic_timeout_error at tcp; the SYN and its retry hit the rule', () => {
    const r = get('syn-drop');
    expect(r).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'tcp', verdict: 'blocked' });
    expect(rules['syn-drop']!.packets).toBe(2);
  });

  it('RST to SYN: connection_refused at tcp', () => {
    const r = get('syn-rst');
    expect(r).toMatchObject({ failure: 'connection_refused', failedPhase: 'tcp', verdict: 'blocked' });
    expect(r.phases[0]!.evidence.error).toBe('ECONNREFUSED');
    expect(rules['syn-rst']!.packets).toBe(1);
  });

  it('RST after the first payload: connection_reset at tls, with the ClientHello size', () => {
    const r = get('hello-rst');
    expect(r).toMatchObject({ failure: 'connection_reset', failedPhase: 'tls', verdict: 'blocked' });
    expect(r.phases.map((p) => [p.phase, p.ok])).toEqual([
      ['dns', true],
      ['tcp', true],
      ['tls', false],
    ]);
    expect(r.phases[2]!.evidence).toMatchObject({ error: 'ECONNRESET', bytesReceived: 0, sni: 'tls.lab.test' });
    expect(rules['hello-rst']!.packets).toBe(1);
    expect(r.phases[2]!.evidence.bytesSent).toBe(rules['hello-rst']!.bytes - 52); // IP (20) + TCP with timestamps (32)
  });

  it('drop after the ClientHello: generic_timeout_error at tls', () => {
    const r = get('hello-drop');
    expect(r).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'tls', verdict: 'blocked' });
    expect(r.phases[2]!.evidence).toMatchObject({ timeoutMs: 2000, bytesReceived: 0 });
    expect(rules['hello-drop']!.packets).toBeGreaterThanOrEqual(2); // the ClientHello and its retransmissions
  });

  it('wrong certificate name: ssl_invalid_hostname at tls, with the certificate presented', () => {
    const r = get('wrong-name');
    expect(r).toMatchObject({ failure: 'ssl_invalid_hostname', failedPhase: 'tls', verdict: 'blocked' });
    expect(r.phases[2]!.evidence).toMatchObject({ error: 'ERR_TLS_CERT_ALTNAME_INVALID', certificate: { subject: 'other.lab.test' } });
  });

  it('WebSocket upgrade refused: ws_bad_status with the HTTP status', () => {
    const r = get('ws-refused');
    expect(r).toMatchObject({ failure: 'ws_bad_status', failedPhase: 'websocket', verdict: 'blocked', control: { phase: 'tls' } });
    expect(r.phases[1]!.evidence.status).toBe(403);
  });

  it('a destination outside the allowlist: policy_denied, and the censor saw no packet', () => {
    const r = get('denied');
    expect(r).toMatchObject({ failure: 'policy_denied', failedPhase: 'tcp', verdict: 'error' });
    expect(r.phases[0]!.evidence).toMatchObject({ deniedAddress: '198.18.2.3', rule: 'deny 198.18.2.3/32' });
    expect(rules.denied!.packets).toBe(0);
  });

  it('the full path works: dns > tcp > tls > websocket over the lab CA', () => {
    const r = get('full-path');
    expect(r).toMatchObject({ failure: null, verdict: 'ok' });
    expect(r.phases.map((p) => [p.phase, p.ok, p.transport])).toEqual([
      ['dns', true, 'udp'],
      ['tcp', true, 'tcp'],
      ['tls', true, 'tls'],
      ['websocket', true, 'wss'],
    ]);
    expect(r.phases[2]!.evidence).toMatchObject({ sni: 'ws.lab.test', certificate: { subject: 'tls.lab.test' } });
  });
});
