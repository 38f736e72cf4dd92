import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import { REPO_ROOT, applyCensor, counters, createLab, createLabCa, describeLab, runOnceInLab, tcpPayloadOf, type Lab, type RuleCounter } from './index.js';

const KEY = '5c'.repeat(32);
const SERVER = '198.18.2.2';
const TLS_NAME = 'reflector.lab.test';
/** The censor's threshold: the 15-20 KB after which the 2025 freezes stop a flow (net4people/bbs#490). */
const LIMIT = 16384;
const PORT = { downFreeze: 4201, downRstA: 4202, downRstB: 4203, tlsFreeze: 4301, tlsRst: 4302 } as const;

/**
 * Issue 12, the TCP `stream` phase through a censor: the real reflector (`callprobe reflector`)
 * in the server namespace, one nftables ruleset with a rule set per scenario (told apart by the
 * reflector port), one `callprobe once` cycle in the client namespace.
 *
 * Ground truth is the censor's own count: a counter placed before each scenario's verdict counts
 * the packets of the flow that passed (`ct reply bytes <= LIMIT`, the same expression the verdict
 * negates) without the handshake's SYN-ACK, so their TCP payload is the counted bytes minus 52 of
 * IPv4 and TCP headers (with timestamps) per packet: the byte offsets callprobe reports must equal it.
 *
 * Why an RST is made by rewriting the reflector's data segment (`tcp flags set rst`) and not by
 * `reject with tcp reset`: nft's reject answers the packet it rejects, so a rejected
 * reflector->client segment sends the RST to the reflector and the client sees a freeze. The DPI
 * resets the client in the server's name; the rewritten segment does exactly that, with the
 * sequence number the client expects next, so the client's kernel takes it.
 */
describeLab('the stream phase (TCP, TLS) through a censor', () => {
  let lab: Lab;
  let results: Map<string, ProbeResult>;
  let rules: Record<string, RuleCounter>;

  beforeAll(async () => {
    lab = await createLab();
    const ca = await createLabCa(join(lab.tmpDir, 'ca'));
    const cert = await ca.issue([TLS_NAME], { ips: [SERVER] });
    writeFileSync(join(lab.tmpDir, 'ca.pem'), ca.caCertPem);
    const reflectorConfig = join(lab.tmpDir, 'reflector.yaml');
    const tcpPorts = [PORT.downFreeze, PORT.downRstA, PORT.downRstB];
    const tlsPorts = [PORT.tlsFreeze, PORT.tlsRst];
    writeFileSync(
      reflectorConfig,
      `key: "${KEY}"
listen:
  tcp: [${tcpPorts.map((p) => `"${SERVER}:${p}"`).join(', ')}]
  tls: [${tlsPorts.map((p) => `{ listen: "${SERVER}:${p}", cert: "${cert.certPath}", key: "${cert.keyPath}" }`).join(', ')}]
limits: { streamsPerMinute: 100 }
metrics: { listen: "" }
`,
    );
    const reflector = lab.spawnNode('server', join(REPO_ROOT, 'src/cli.ts'), ['reflector', '--config', reflectorConfig]);
    await reflector.waitForLine(/"msg":"reflector listening"/, 20_000);

    /** The reflector->client packets of a flow that passed the censor, SYN-ACK left out. */
    const passedDown = (port: number, name: string) => `tcp sport ${port} tcp flags & syn == 0 ct reply bytes <= ${LIMIT} counter comment "${name}"`;
    await applyCensor(lab, [
      passedDown(PORT.downFreeze, 'down-freeze-passed'),
      `tcp sport ${PORT.downFreeze} ct reply bytes > ${LIMIT} counter drop comment "down-freeze"`,
      ...[PORT.downRstA, PORT.downRstB, PORT.tlsRst].flatMap((port) => [
        passedDown(port, `rst-${port}-passed`),
        `tcp sport ${port} ct reply bytes > ${LIMIT} counter tcp flags set rst|ack comment "rst-${port}"`,
      ]),
      passedDown(PORT.tlsFreeze, 'tls-freeze-passed'),
      `tcp sport ${PORT.tlsFreeze} ct reply bytes > ${LIMIT} counter drop comment "tls-freeze"`,
    ]);

    const target = (name: string, port: number, tls: boolean, stream = '{ stallMs: 1500 }') =>
      `  - { name: ${name}, host: ${SERVER}, port: ${port}, sni: ${TLS_NAME}, phases: [tcp, ${tls ? 'tls, ' : ''}{ stream: ${stream} }] }\n`;
    const run = await runOnceInLab(lab, {
      catalogues: {
        'stream.yaml':
          'service: lab\ntargets:\n' +
          target('down-freeze', PORT.downFreeze, false) +
          target('down-rst-a', PORT.downRstA, false) +
          target('down-rst-b', PORT.downRstB, false) +
          target('tls-freeze', PORT.tlsFreeze, true) +
          target('tls-rst', PORT.tlsRst, true),
      },
      phaseTimeout: '5s',
      extraConfig: `media: { reflectorKey: "${KEY}" }\ntls: { extraCa: [ca.pem] }`,
      timeoutMs: 40_000,
    });
    results = run.results;
    rules = await counters(lab);
  }, 90_000);
  afterAll(() => lab?.destroy());

  const stream = (name: string) => {
    const r = results.get(name);
    if (!r) throw new Error(`no result for ${name} (have ${[...results.keys()].join(', ')})`);
    return { run: r, phase: r.phases.find((p) => p.phase === 'stream')! };
  };
  const passed = (name: string): number => tcpPayloadOf(rules[name]!);

  it('download frozen after 16 KB from the reflector: stream_cutoff at the byte offset the censor let through', () => {
    const { run, phase } = stream('down-freeze');
    expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream', verdict: 'degraded' });
    expect(phase.evidence).toMatchObject({ proofVerified: true, cutoffAtBytes: passed('down-freeze-passed') });
    expect(rules['down-freeze']!.packets).toBeGreaterThan(0);
  });

  it.each(['down-rst-a', 'down-rst-b'])('%s: the censor turns the reflector’s data into an RST: connection_reset, not eof_error', (name) => {
    const { run, phase } = stream(name);
    const port = name === 'down-rst-a' ? PORT.downRstA : PORT.downRstB;
    expect(run).toMatchObject({ failure: 'connection_reset', failedPhase: 'stream' });
    expect(phase.evidence).toMatchObject({ error: 'ECONNRESET', bytesReceived: passed(`rst-${port}-passed`) });
    expect(rules[`rst-${port}`]!.packets).toBeGreaterThan(0);
  });

  it('over TLS, an RST after the handshake is connection_reset', () => {
    const { run, phase } = stream('tls-rst');
    expect(run).toMatchObject({ failure: 'connection_reset', failedPhase: 'stream' });
    expect(phase.evidence).toMatchObject({ error: 'ECONNRESET' });
  });
});
