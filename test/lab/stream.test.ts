import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import { ACK_RECORD_LENGTH } from '../../src/protocol/stream-records.js';
import { REPO_ROOT, applyCensor, counters, createLab, createLabCa, describeLab, runOnceInLab, tcpPayloadOf, type Lab, type RuleCounter } from './index.js';

const KEY = '5c'.repeat(32);
const SERVER = '198.18.2.2';
const TLS_NAME = 'reflector.lab.test';
/** The censor's threshold: the 15-20 KB after which the 2025 freezes stop a flow (net4people/bbs#490). */
const LIMIT = 16384;
const PORT = { downFreeze: 4201, downRstA: 4202, downRstB: 4203, upFreeze: 4204, bothL4: 4205, upL4: 4206, upRst: 4207, tlsFreeze: 4301, tlsRst: 4302, tlsUpFreeze: 4303 } as const;
/** The "l4-25" freeze: about 25 packets counted both ways, then nothing (hyperion-cs/dpi-checkers, May 2026). */
const L4_PACKETS = 25;

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
    // So that the censor counts segments, as a DPI on a real link does (not veth's 64 KiB TSO packets).
    await lab.oneSegmentPerPacket();
    const ca = await createLabCa(join(lab.tmpDir, 'ca'));
    const cert = await ca.issue([TLS_NAME], { ips: [SERVER] });
    writeFileSync(join(lab.tmpDir, 'ca.pem'), ca.caCertPem);
    const reflectorConfig = join(lab.tmpDir, 'reflector.yaml');
    const tcpPorts = [PORT.downFreeze, PORT.downRstA, PORT.downRstB, PORT.upFreeze, PORT.bothL4, PORT.upL4, PORT.upRst];
    const tlsPorts = [PORT.tlsFreeze, PORT.tlsRst, PORT.tlsUpFreeze];
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
    /** The client->reflector packets that passed, SYN left out; and of those, the ones with payload. */
    const passedUp = (port: number, name: string) => [
      `tcp dport ${port} tcp flags & syn == 0 ct original bytes <= ${LIMIT} counter comment "${name}"`,
      `tcp dport ${port} tcp flags & syn == 0 ip length > 52 ct original bytes <= ${LIMIT} counter comment "${name}-data"`,
    ];
    await applyCensor(lab, [
      passedDown(PORT.downFreeze, 'down-freeze-passed'),
      `tcp sport ${PORT.downFreeze} ct reply bytes > ${LIMIT} counter drop comment "down-freeze"`,
      ...[PORT.downRstA, PORT.downRstB, PORT.tlsRst].flatMap((port) => [
        passedDown(port, `rst-${port}-passed`),
        `tcp sport ${port} ct reply bytes > ${LIMIT} counter tcp flags set rst|ack comment "rst-${port}"`,
      ]),
      passedDown(PORT.tlsFreeze, 'tls-freeze-passed'),
      `tcp sport ${PORT.tlsFreeze} ct reply bytes > ${LIMIT} counter drop comment "tls-freeze"`,
      // The upload frozen after 16 KB from the client: every client->reflector packet beyond dropped.
      ...[PORT.upFreeze, PORT.tlsUpFreeze].flatMap((port) => [
        ...passedUp(port, `up-${port}-passed`),
        `tcp dport ${port} ct original bytes > ${LIMIT} counter drop comment "up-${port}"`,
      ]),
      // Once the client's bytes pass 16 KB, the reflector's next packet (its ACK) becomes an RST: the upload is reset.
      ...passedUp(PORT.upRst, 'up-rst-passed'),
      `tcp sport ${PORT.upRst} ct original bytes > ${LIMIT} counter tcp flags set rst|ack comment "up-rst"`,
      // Both ways frozen once the flow has carried 25 packets, counted both ways (ct packets: original + reply).
      ...[PORT.bothL4, PORT.upL4].flatMap((port) => [
        `tcp dport ${port} tcp flags & syn == 0 ct packets <= ${L4_PACKETS} counter comment "l4-${port}-up-passed"`,
        `tcp dport ${port} tcp flags & syn == 0 ip length > 52 ct packets <= ${L4_PACKETS} counter comment "l4-${port}-up-data"`,
        `tcp sport ${port} tcp flags & syn == 0 ct packets <= ${L4_PACKETS} counter comment "l4-${port}-down-passed"`,
        `tcp dport ${port} ct packets > ${L4_PACKETS} counter drop comment "l4-${port}-up"`,
        `tcp sport ${port} ct packets > ${L4_PACKETS} counter drop comment "l4-${port}-down"`,
      ]),
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
          target('up-freeze', PORT.upFreeze, false, '{ direction: upload, stallMs: 1500 }') +
          target('both-l4', PORT.bothL4, false, '{ direction: both, stallMs: 1500 }') +
          target('up-l4', PORT.upL4, false, '{ direction: upload, stallMs: 1500 }') +
          target('up-rst', PORT.upRst, false, '{ direction: upload, stallMs: 1500 }') +
          target('tls-freeze', PORT.tlsFreeze, true) +
          target('tls-rst', PORT.tlsRst, true) +
          target('tls-up-freeze', PORT.tlsUpFreeze, true, '{ direction: upload, stallMs: 1500 }'),
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
    const got = passed('down-freeze-passed');
    expect(phase.evidence).toMatchObject({
      proofVerified: true,
      cutoffAtBytes: got,
      cutoff: { direction: 'download', down: { tcpPayloadBytes: got, streamBytes: got - 16 } },
      bytesReceived: got,
    });
    expect(rules['down-freeze']!.packets).toBeGreaterThan(0);
    console.log(`download freeze: the censor passed ${rules['down-freeze-passed']!.packets} packets, ${got} bytes of payload; callprobe: ${phase.evidence.cutoffAtBytes}`);
  });

  it('upload frozen after 16 KB from the client: stream_cutoff upload, acknowledged up to exactly the payload the censor let through', () => {
    const { run, phase } = stream('up-freeze');
    expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream', verdict: 'degraded' });
    const got = passed(`up-${PORT.upFreeze}-passed`);
    // The reflector acknowledges raw bytes: what arrived is what passed, the 50-byte request first.
    expect(phase.evidence).toMatchObject({
      direction: 'upload',
      cutoffAtBytes: got,
      cutoff: {
        direction: 'upload',
        up: { ackedTcpPayloadBytes: got, ackedBytes: got - 50, ackedWrites: Math.floor((got - 50) / 1024), writes: 256, writtenBytes: 262144, tcpPayloadBytes: 50 + 262144 },
      },
    });
    expect(rules[`up-${PORT.upFreeze}`]!.packets).toBeGreaterThan(0);
    // Writes are an estimate of segments (one each on an idle path; a busy one may put two in one): reported, not asserted.
    const dataPackets = rules[`up-${PORT.upFreeze}-passed-data`]!.packets;
    const ackedWrites = (phase.evidence.cutoff as { up: { ackedWrites: number } }).up.ackedWrites;
    console.log(`upload freeze: the censor passed ${dataPackets} packets with payload (the request among them), ${got} bytes of payload; callprobe: acknowledged ${got}, in ${ackedWrites} writes`);
  });

  /** The censor's count of an l4-25 flow after the handshake (its SYN and SYN-ACK are two of the 25), each way. */
  const l4 = (port: number) => {
    const up = rules[`l4-${port}-up-passed`]!;
    const down = rules[`l4-${port}-down-passed`]!;
    return { packets: up.packets + down.packets, upPackets: up.packets, upData: rules[`l4-${port}-up-data`]!.packets, up: tcpPayloadOf(up), down: tcpPayloadOf(down) };
  };
  type Cut = { direction: string; down?: { tcpPayloadBytes: number }; up: { ackedTcpPayloadBytes: number; ackedWrites: number; tcpPayloadBytes: number } };
  /** An l4-25 target's result: a stream_cutoff, and the censor passed 25 packets (23 after the SYN and SYN-ACK). */
  const l4Cutoff = (name: string, port: number) => {
    const { run, phase } = stream(name);
    expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream', verdict: 'degraded' });
    const censor = l4(port);
    expect(censor.packets).toBe(L4_PACKETS - 2);
    return { phase, censor, cut: phase.evidence.cutoff as Cut };
  };

  it('upload after 25 packets counted both ways (l4-25, as its prober uploads): stream_cutoff upload; the acks that passed, exactly', () => {
    const { phase, censor, cut } = l4Cutoff('up-l4', PORT.upL4);
    expect(cut.direction).toBe('upload');
    // From the reflector came the proof and the acks the censor let pass, every byte of them measured.
    const ev = phase.evidence as { tcp: { readBytes: number }; upload: { acks: number } };
    expect(ev.tcp.readBytes).toBe(censor.down);
    expect(ev.upload.acks).toBe((censor.down - 16) / ACK_RECORD_LENGTH);
    // The acks that were dropped make what callprobe knows arrived a lower bound of what passed.
    expect(cut.up.ackedTcpPayloadBytes).toBeLessThanOrEqual(censor.up);
    expect(cut.up.tcpPayloadBytes).toBeGreaterThanOrEqual(censor.up);
    console.log(
      `l4-25 upload: the censor passed ${censor.upPackets} packets up (${censor.upData} with payload, ${censor.up} B) and ${censor.packets - censor.upPackets} down (${censor.down} B) after the handshake; ` +
        `callprobe: ${ev.upload.acks} acks, ${cut.up.ackedTcpPayloadBytes} B acknowledged (${cut.up.ackedWrites} writes), ${cut.up.tcpPayloadBytes} B written`,
    );
  });

  it('both ways after 25 packets counted both ways (l4-25): stream_cutoff both, the download offset exact, the acks a lower bound of the upload', () => {
    const { phase, censor, cut } = l4Cutoff('both-l4', PORT.bothL4);
    expect(cut).toMatchObject({ direction: 'both', down: { tcpPayloadBytes: censor.down } });
    expect(phase.evidence.cutoffAtBytes).toBe(censor.down);
    expect(cut.up.ackedTcpPayloadBytes).toBeGreaterThanOrEqual(50);
    expect(cut.up.ackedTcpPayloadBytes).toBeLessThanOrEqual(censor.up);
    expect(cut.up.tcpPayloadBytes).toBeGreaterThanOrEqual(censor.up);
    console.log(
      `l4-25 both: the censor passed ${censor.upPackets} packets up (${censor.up} B) and ${censor.packets - censor.upPackets} down (${censor.down} B) after the handshake; ` +
        `callprobe: ${cut.down!.tcpPayloadBytes} B down, ${cut.up.ackedTcpPayloadBytes} B up acknowledged`,
    );
  });

  it.each(['down-rst-a', 'down-rst-b'])('%s: the censor turns the reflector’s data into an RST: connection_reset, not eof_error', (name) => {
    const { run, phase } = stream(name);
    const port = name === 'down-rst-a' ? PORT.downRstA : PORT.downRstB;
    expect(run).toMatchObject({ failure: 'connection_reset', failedPhase: 'stream' });
    expect(phase.evidence).toMatchObject({ error: 'ECONNRESET', bytesReceived: passed(`rst-${port}-passed`) });
    expect(rules[`rst-${port}`]!.packets).toBeGreaterThan(0);
  });

  it('upload reset by the censor once past 16 KB: connection_reset while callprobe writes, with what was acknowledged', () => {
    const { run, phase } = stream('up-rst');
    expect(run).toMatchObject({ failure: 'connection_reset', failedPhase: 'stream' });
    const up = phase.evidence.upload as { ackedBytes: number; writtenBytes: number };
    expect(phase.evidence.error).toBe('ECONNRESET');
    // Everything acknowledged passed the censor before the reset (the request first).
    expect(50 + up.ackedBytes).toBeLessThanOrEqual(passed('up-rst-passed'));
    expect(up.writtenBytes).toBeGreaterThan(up.ackedBytes);
    expect(rules['up-rst']!.packets).toBeGreaterThan(0);
    console.log(`upload RST: ${phase.evidence.failedOperation} failed with ${phase.evidence.error}; the censor passed ${passed('up-rst-passed')} B; callprobe: ${up.ackedBytes} acknowledged, ${up.writtenBytes} written`);
  });

  it('over TLS, the freeze offset counts TCP payload bytes (what the censor counts), not decrypted bytes', () => {
    const { run, phase } = stream('tls-freeze');
    expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream' });
    const got = passed('tls-freeze-passed');
    expect(phase.evidence).toMatchObject({ proofVerified: true, cutoffAtBytes: got, cutoff: { direction: 'download', down: { tcpPayloadBytes: got } } });
    // The decrypted bytes stop at the last whole 16 KiB record: here, only the proof.
    expect(phase.evidence.bytesReceived).toBe(16);
    console.log(`TLS freeze: the censor passed ${got} bytes of payload (handshake included); callprobe: ${phase.evidence.cutoffAtBytes} on the TCP socket, ${phase.evidence.bytesReceived} decrypted`);
  });

  it('over TLS, the upload frozen: acknowledged up to exactly the TCP payload the censor let through (records, not plaintext)', () => {
    const { run, phase } = stream('tls-up-freeze');
    expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream' });
    const got = passed(`up-${PORT.tlsUpFreeze}-passed`);
    const up = (phase.evidence.cutoff as { up: { ackedBytes: number; ackedTcpPayloadBytes: number } }).up;
    // Each 1 KiB write is one TLS 1.3 record of 1024 + 22 bytes; the reflector acknowledges whole
    // records, so the acknowledged offset is the last record boundary within what passed: the
    // censor's count itself when the freeze fell between segments that each held a record, as on
    // an idle path; short of it by the part of a record a busy path may have split across them.
    const records = up.ackedBytes / 1024;
    expect(Number.isInteger(records)).toBe(true);
    const beforeUpload = up.ackedTcpPayloadBytes - records * (1024 + 22);
    const lastBoundary = beforeUpload + Math.floor((got - beforeUpload) / (1024 + 22)) * (1024 + 22);
    expect(phase.evidence).toMatchObject({ cutoffAtBytes: lastBoundary, cutoff: { direction: 'upload', up: { ackedTcpPayloadBytes: lastBoundary } } });
    console.log(`TLS upload freeze: the censor passed ${got} bytes of payload; callprobe: acknowledged ${up.ackedTcpPayloadBytes} (${records} records)`);
  });

  it('over TLS, an RST after the handshake is connection_reset', () => {
    const { run, phase } = stream('tls-rst');
    expect(run).toMatchObject({ failure: 'connection_reset', failedPhase: 'stream' });
    expect(phase.evidence).toMatchObject({ error: 'ECONNRESET' });
  });
});
