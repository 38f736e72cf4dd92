import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import type { WhatsAppServerInfo } from './servers/whatsapp-server.js';
import {
  IP_TCP_HEADERS,
  applyCensor,
  counters,
  createLab,
  createLabCa,
  describeLab,
  runOnceInLab,
  type OnceRun,
  REPO_ROOT,
  startDnsServer,
  startNodeServer,
  type Lab,
  type LabServer,
} from './index.js';

/**
 * WhatsApp's handshake through a censor (issue 5): the lab WhatsApp server (noise-c sealing,
 * libsignal-signed chain under a lab root) in the server namespace, one nftables ruleset, one
 * `callprobe once` cycle in the client namespace, and an exact assertion per scenario. The probe
 * takes the lab root key from the catalogue's `rootKey` param.
 */
const WHATSAPP_SERVER_SCRIPT = join(REPO_ROOT, 'test/lab/servers/whatsapp-server.ts');
const SERVER = '198.18.2.2';
/** The connection header (4) and the framed ClientHello (3 + 36). */
const CLIENT_FIRST_BYTES = 43;

/** Port per TCP scenario; the WebSocket listener is on 443. */
const PORTS = { ok: 5222, replay: 5223, garbage: 5224, 'wrong-root': 5225, oversized: 5226, rst: 5227, drop: 5228 } as const;

describeLab('whatsapp handshake through a censor', () => {
  let lab: Lab;
  let server: LabServer;
  let info: WhatsAppServerInfo;
  let once: OnceRun;
  let rules: Record<string, { packets: number; bytes: number }>;

  beforeAll(async () => {
    lab = await createLab();
    const ca = await createLabCa(join(lab.tmpDir, 'ca'));
    const cert = await ca.issue(['web.lab.test'], { ips: [SERVER] });
    writeFileSync(join(lab.tmpDir, 'ca.pem'), ca.caCertPem);
    await startDnsServer(lab, { records: { 'web.lab.test': [SERVER], 'g.lab.test': [SERVER] }, zones: ['lab.test'] });
    const tcp = (name: keyof typeof PORTS, mode: string) => ({ kind: 'tcp', name, port: PORTS[name], mode });
    const listeners = [
      tcp('ok', 'ok'),
      tcp('replay', 'replay'),
      tcp('garbage', 'garbage'),
      tcp('wrong-root', 'wrong-root'),
      tcp('oversized', 'oversized'),
      tcp('rst', 'ok'),
      tcp('drop', 'ok'),
      { kind: 'ws', name: 'wss', port: 443, mode: 'ok', tls: { cert: cert.certPath, key: cert.keyPath }, refuse: { '/refuse': 403 } },
    ];
    server = await startNodeServer(lab, WHATSAPP_SERVER_SCRIPT, ['--config', JSON.stringify({ listeners })]);
    const ready = server.process.lines.find((l) => l.includes('READY '))!;
    info = JSON.parse(ready.slice(ready.indexOf('READY ') + 6)) as WhatsAppServerInfo;

    await applyCensor(lab, [
      // 0x5741 is 'WA': the connection header opens the first payload of every WhatsApp connection.
      `tcp dport ${PORTS.rst} @ih,0,16 0x5741 counter reject with tcp reset comment "wa-rst"`,
      `tcp dport ${PORTS.drop} @ih,0,16 0x5741 counter drop comment "wa-drop"`,
    ]);

    const wa = `{ whatsapp: &wa { header: { magic: 6, dictVersion: 3 }, rootKey: "${info.rootKey}" } }`;
    const target = (name: string, where: string, phases: string) => `  - name: ${name}\n    ${where}\n    phases: [${phases}]\n`;
    const wsPhases = `{ websocket: { origin: "https://web.whatsapp.com" } }, { whatsapp: *wa }`;
    writeFileSync(
      join(lab.tmpDir, 'whatsapp.yaml'),
      'service: whatsapp\ntargets:\n' +
        target('ok-tcp', `host: g.lab.test\n    port: ${PORTS.ok}`, wa) +
        target('ok-wss', 'url: wss://web.lab.test/ws/chat', wsPhases) +
        target('ws-refused', 'url: wss://web.lab.test/refuse', wsPhases) +
        (['rst', 'drop', 'replay', 'garbage', 'wrong-root', 'oversized'] as const)
          .map((name) => target(name, `host: ${SERVER}\n    port: ${PORTS[name]}`, '{ whatsapp: *wa }'))
          .join(''),
    );
    writeFileSync(
      join(lab.tmpDir, 'controls.yaml'),
      'service: control\ncontrol: true\ntargets:\n' + target('domestic', 'host: web.lab.test\n    port: 443', 'dns, tcp, tls'),
    );
    const run = await runOnceInLab(lab, {
      catalogueFiles: ['whatsapp.yaml', 'controls.yaml'],
      concurrency: 12,
      phaseTimeout: '2s',
      resolver: SERVER,
      extraConfig: 'tls: { extraCa: [ca.pem] }',
    });
    once = run;
    rules = await counters(lab);
  }, 90_000);
  afterAll(() => lab?.destroy());

  const get = (name: string): ProbeResult => once.get(name);
  const whatsapp = (name: string) => get(name).phases.find((p) => p.phase === 'whatsapp')!;
  const serverEvents = (listener: string, event: string) => server.events().filter((e) => e.listener === listener && e.event === event);
  const blocked = { verdict: 'blocked', failedPhase: 'whatsapp', control: { target: 'domestic', phase: 'tcp', ok: true } };

  it('the control passes: verdicts below can say blocked', () => {
    expect(get('domestic')).toMatchObject({ service: 'control', verdict: 'ok', failure: null });
  });

  it('OK over TCP: dns > tcp > whatsapp, static key decrypted, lab chain verified to the configured root', () => {
    const r = get('ok-tcp');
    expect(r).toMatchObject({ verdict: 'ok', failure: null });
    expect(r.phases.map((p) => [p.phase, p.ok, p.transport])).toEqual([
      ['dns', true, 'udp'],
      ['tcp', true, 'tcp'],
      ['whatsapp', true, 'tcp'],
    ]);
    expect(whatsapp('ok-tcp')).toMatchObject({ endpoint: `${SERVER}:${PORTS.ok}` });
    expect(whatsapp('ok-tcp').evidence).toMatchObject({
      header: '57410603',
      rootKey: info.rootKey,
      bytesSent: CLIENT_FIRST_BYTES,
      bytesReceived: info.answerBytes.serverHello,
      serverHelloBytes: info.answerBytes.serverHello - 3,
      staticDecrypted: true,
      serverStatic: info.staticKey,
      certChain: {
        verified: true,
        reason: null,
        serials: { intermediate: info.chain.intermediateSerial, intermediateIssuer: 0, leaf: info.chain.leafSerial, leafIssuer: info.chain.intermediateSerial },
        validity: { intermediate: info.chain.validity, leaf: info.chain.validity },
      },
    });
    expect(serverEvents('ok', 'hello')).toEqual([expect.objectContaining({ header: '57410603', helloBytes: 36 })]);
  });

  it('OK over WebSocket: dns > tcp > tls > websocket (Origin web.whatsapp.com) > whatsapp over the lab CA', () => {
    const r = get('ok-wss');
    expect(r).toMatchObject({ verdict: 'ok', failure: null });
    expect(r.phases.map((p) => [p.phase, p.ok, p.transport])).toEqual([
      ['dns', true, 'udp'],
      ['tcp', true, 'tcp'],
      ['tls', true, 'tls'],
      ['websocket', true, 'wss'],
      ['whatsapp', true, 'wss'],
    ]);
    expect(whatsapp('ok-wss')).toMatchObject({ endpoint: 'wss://web.lab.test/ws/chat' });
    expect(whatsapp('ok-wss').evidence).toMatchObject({
      bytesSent: CLIENT_FIRST_BYTES,
      bytesReceived: info.answerBytes.serverHello,
      staticDecrypted: true,
      certChain: { verified: true },
    });
    expect(serverEvents('wss', 'upgrade')).toContainEqual(expect.objectContaining({ path: '/ws/chat', origin: 'https://web.whatsapp.com', status: 101 }));
  });

  it('WebSocket upgrade refused: ws_bad_status at websocket, whatsapp skipped', () => {
    const r = get('ws-refused');
    expect(r).toMatchObject({ failure: 'ws_bad_status', failedPhase: 'websocket', verdict: 'blocked', control: { target: 'domestic', phase: 'tls', ok: true } });
    expect(r.phases[3]!.evidence).toMatchObject({ status: 403, server: 'lab-whatsapp' });
    expect(r.phases[4]).toMatchObject({ phase: 'whatsapp', skipped: true });
  });

  it('RST after a payload starting with WA: connection_reset at whatsapp, one packet hit the rule', () => {
    const r = get('rst');
    expect(r).toMatchObject({ failure: 'connection_reset', ...blocked });
    expect(whatsapp('rst').evidence).toMatchObject({ error: 'ECONNRESET', header: '57410603', bytesSent: CLIENT_FIRST_BYTES, bytesReceived: 0, staticDecrypted: false });
    expect(rules['wa-rst']).toMatchObject({ packets: 1, bytes: CLIENT_FIRST_BYTES + IP_TCP_HEADERS });
    expect(serverEvents('rst', 'hello')).toEqual([]);
  });

  it('drop after the ClientHello: generic_timeout_error at whatsapp, the 43 bytes sent and retransmitted', () => {
    const r = get('drop');
    expect(r).toMatchObject({ failure: 'generic_timeout_error', ...blocked });
    expect(whatsapp('drop').evidence).toMatchObject({ timeoutMs: 2000, bytesSent: CLIENT_FIRST_BYTES, bytesReceived: 0 });
    expect(rules['wa-drop']!.packets).toBeGreaterThanOrEqual(2);
    expect(rules['wa-drop']!.bytes).toBe(rules['wa-drop']!.packets * (CLIENT_FIRST_BYTES + IP_TCP_HEADERS));
    expect(serverEvents('drop', 'hello')).toEqual([]);
  });

  it('a replayed ServerHello from another session: proto_mismatch, the static key does not decrypt under our keys', () => {
    const r = get('replay');
    expect(r).toMatchObject({ failure: 'proto_mismatch', ...blocked });
    expect(whatsapp('replay').evidence).toMatchObject({
      staticDecrypted: false,
      part: 'static',
      bytesSent: CLIENT_FIRST_BYTES,
      bytesReceived: info.answerBytes.serverHello,
    });
    expect(serverEvents('replay', 'answer')).toEqual([expect.objectContaining({ mode: 'replay', bytes: info.answerBytes.serverHello })]);
  });

  it('a garbage answer: proto_malformed', () => {
    const r = get('garbage');
    expect(r).toMatchObject({ failure: 'proto_malformed', ...blocked });
    expect(whatsapp('garbage').evidence).toMatchObject({
      error: 'protobuf: varint longer than 10 bytes',
      bytesReceived: info.answerBytes.garbage,
      firstBytesHex: `000020${'ff'.repeat(32)}`,
      staticDecrypted: false,
    });
  });

  it('a chain signed by the wrong root: cert_chain_invalid, with the chain in evidence', () => {
    const r = get('wrong-root');
    expect(r).toMatchObject({ failure: 'cert_chain_invalid', ...blocked });
    expect(whatsapp('wrong-root').evidence).toMatchObject({
      staticDecrypted: true,
      serverStatic: info.staticKey,
      certChain: {
        verified: false,
        failure: 'cert_chain_invalid',
        reason: 'intermediate_signature_invalid',
        serials: { intermediate: info.chain.intermediateSerial, leaf: info.chain.leafSerial },
      },
    });
  });

  it('a 16 MB frame length: proto_malformed at once, 1 KiB read, connection closed before the server could push more', async () => {
    const r = get('oversized');
    expect(r).toMatchObject({ failure: 'proto_malformed', ...blocked });
    expect(whatsapp('oversized').evidence).toMatchObject({
      declaredLength: 0xff_ffff,
      maxFrameSize: 65_536,
      lengthHex: 'ffffff',
      bytesReceived: info.answerBytes.oversizedFirst,
    });
    const peer = (r.phases[0]!.evidence as { localAddress: string }).localAddress;
    const closed = await server.waitForEvent((e) => e.listener === 'oversized' && e.event === 'close' && e.peer === peer);
    // The server pauses 500 ms after the first 1 KiB: the probe had hung up by then.
    expect(closed).toMatchObject({ bytesIn: CLIENT_FIRST_BYTES, bytesOut: info.answerBytes.oversizedFirst });
  });
});
