import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import { REPO_ROOT, applyCensor, counters, createLab, describeLab, runOnceInLab, type Lab, type RuleCounter } from './index.js';

/**
 * Call-path diagnosis (issue 12): which shape, which destination, which direction, what rate.
 * Two reflectors (one `callprobe reflector` process in the server namespace, listening on two
 * addresses): "foreign" on a network of its own, 198.19.5.2, and "domestic" on the server's
 * network, 198.18.2.20. One censor ruleset with a rule per scenario (told apart by the port) and
 * one `callprobe once` cycle in the client namespace, so every scenario runs at the same moment.
 *
 * Exact counts: the censor counts IP packets and bytes; callprobe counts UDP payload. Over IPv4
 * a datagram is 28 bytes more on the wire (IP 20, UDP 8), so the censor's bytes are callprobe's
 * plus 28 a packet. The report after a silent stream (48 bytes out, 32 back, on a new flow) is
 * kept out of the scenario counters by its UDP length (56 and 40).
 */

const KEY = '6b'.repeat(32);
const FOREIGN = '198.19.5.2';
const DOMESTIC = '198.18.2.20';
const PORT = { classify: 4010, l425: 4011, uplink: 4012, downlink: 4013, sweep: 4014, burst: 4015, control: 4016 } as const;
const IPV4_UDP_HEADERS = 28;
const REPORT_REQUEST_UDP_LENGTH = 8 + 48;
const REPORT_REPLY_UDP_LENGTH = 8 + 32;

interface Stream {
  role: string;
  shape: string;
  controlOf?: string;
  destination?: string;
  location?: string;
  sent: number;
  received: number;
  failure: string | null;
  perDirection: { source: string; uplink: { packets: number; bytes: number; lossRatio: number }; downlink: { packets: number; bytes: number; lossRatio: number } } | null;
  cutDirection?: { direction: string; reflectorHighestSeq: number | null; lastEchoedSeq: number | null; receivedAfterLastEcho: number | null };
  reflectorReport?: { answered: boolean; requestsSent: number };
  cutoff: { afterPackets: number } | null;
  throttle: { throttled: boolean; dispersion: number; deliveredRatio: number; burstBytes: number; fromMs: number } | null;
  streamStartMs: number;
  sweep?: { steps: Array<{ offeredKbps: number; deliveredKbps: number; deliveredRatio: number }>; knee: { atKbps: number; lastCleanKbps: number | null; policedKbps: number; policedIpKbps: number } | null };
}

describeLab('call-path diagnosis: shapes × destinations, direction, rate', () => {
  let lab: Lab;
  let results: Map<string, ProbeResult>;
  let rules: Record<string, RuleCounter>;
  const get = (t: string): ProbeResult => results.get(t)!;
  const streams = (t: string): Stream[] => get(t).phases.find((p) => p.phase === 'media')!.evidence.streams as Stream[];
  const evidence = (t: string): Record<string, unknown> => get(t).phases.find((p) => p.phase === 'media')!.evidence;

  beforeAll(async () => {
    lab = await createLab({ serverAddresses: [FOREIGN, DOMESTIC] });
    const config = join(lab.tmpDir, 'reflector.yaml');
    const listen = Object.values(PORT).flatMap((p) => [`"${FOREIGN}:${p}"`, `"${DOMESTIC}:${p}"`]);
    writeFileSync(
      config,
      `key: "${KEY}"\nlisten:\n  udp: [${listen.join(', ')}]\nlimits: { packetsPerSecond: 10000, packetBurst: 10000, bytesPerSecond: 8MiB, byteBurst: 8MiB }\nmetrics: { listen: "" }\n`,
    );
    const reflector = lab.spawnNode('server', join(REPO_ROOT, 'src/cli.ts'), ['reflector', '--config', config]);
    await reflector.waitForLine(/"msg":"reflector listening"/, 20_000);

    const notReport = (dir: 'dport' | 'sport') => `udp length != ${dir === 'dport' ? REPORT_REQUEST_UDP_LENGTH : REPORT_REPLY_UDP_LENGTH}`;
    await applyCensor(lab, [
      // A shape rule: RTP version 2 in the first two bits (0x80-0xBF), towards both reflectors.
      // (Not the report after a silent stream: its random first byte would match a quarter of the time.)
      `udp dport ${PORT.classify} ${notReport('dport')} @ih,0,2 2 counter drop comment "classify"`,
      // l4-25: a flow to the foreign reflector freezes after 25 packets counted both ways (the
      // 26th, whichever way, and all after it are dropped); the domestic one is untouched.
      `ip daddr ${FOREIGN} udp dport ${PORT.l425} ${notReport('dport')} ct packets <= 25 counter comment "l425-up"`,
      `ip saddr ${FOREIGN} udp sport ${PORT.l425} ${notReport('sport')} ct packets <= 25 counter comment "l425-down"`,
      `ip daddr ${FOREIGN} udp dport ${PORT.l425} ct packets > 25 counter drop comment "l425-drop-up"`,
      `ip saddr ${FOREIGN} udp sport ${PORT.l425} ct packets > 25 counter drop comment "l425-drop-down"`,
      // One way only: after 20 packets up, or after 20 echoes down.
      `udp dport ${PORT.uplink} ct original packets > 20 counter drop comment "uplink"`,
      `udp sport ${PORT.downlink} ct reply packets > 20 counter drop comment "downlink"`,
      // A 128 kbit/s policer (16 kB/s of IP bytes) on the way up.
      `udp dport ${PORT.sweep} limit rate over 16 kbytes/second counter drop comment "policer"`,
      // A byte policer with a realistic burst: 3 kB/s, 3000 bytes saved.
      `udp dport ${PORT.burst} limit rate over 3 kbytes/second burst 3000 bytes counter drop comment "burst"`,
    ]);

    const target = (name: string, host: string, port: number, location: string, timeout: string, media: string) =>
      `  - { name: ${name}, host: ${host}, port: ${port}, location: ${location}, phaseTimeout: ${timeout}, phases: [{ media: { ${media} } }] }\n`;
    const domestic = (port: number) => `reflectors: [{ name: msk, address: "${DOMESTIC}:${port}", location: domestic }]`;
    const run = await runOnceInLab(lab, {
      catalogues: {
        'calls.yaml':
          'service: calls\ntargets:\n' +
          target('classify', FOREIGN, PORT.classify, 'foreign', '10s', `shapes: [rtp, whatsapp-stun], control: random, durationMs: 6000, ${domestic(PORT.classify)}`) +
          target('l425', FOREIGN, PORT.l425, 'foreign', '8s', `shape: rtp, control: random, durationMs: 3000, ${domestic(PORT.l425)}`) +
          target('uplink', FOREIGN, PORT.uplink, 'foreign', '8s', 'shape: rtp, durationMs: 3000') +
          target('downlink', FOREIGN, PORT.downlink, 'foreign', '8s', 'shape: rtp, durationMs: 3000') +
          target('sweep', FOREIGN, PORT.sweep, 'foreign', '25s', 'shape: rtp, sweep: { ratesKbps: [32, 64, 128, 256, 512], stepMs: 3000, packetBytes: 160 }') +
          target('burst', FOREIGN, PORT.burst, 'foreign', '14s', 'shape: rtp, durationMs: 10000'),
        'controls.yaml': 'service: control\ncontrol: true\ntargets:\n' + target('reflector', DOMESTIC, PORT.control, 'domestic', '6s', 'shape: rtp, durationMs: 2000'),
      },
      phaseTimeout: '3s',
      extraConfig: `media: { reflectorKey: "${KEY}" }`,
      timeoutMs: 60_000,
    });
    results = run.results;
    rules = await counters(lab);
  });
  afterAll(() => lab?.destroy());

  it('a shape rule: RTP dropped to both reflectors while its inverted control and whatsapp-stun pass: protocol_classification', () => {
    expect(evidence('classify').diagnosis).toEqual({
      result: 'protocol_classification',
      reason: 'the rtp stream failed towards the foreign and the domestic reflector while the bit-inverted control passed on the same paths: the packets are told apart by what they look like',
      classifiedShapes: ['rtp'],
      matrix: [
        { shape: 'rtp', destination: 'classify', location: 'foreign', service: 'media_no_packets', control: null, differentiation: 'differentiated' },
        { shape: 'whatsapp-stun', destination: 'classify', location: 'foreign', service: null, control: null, differentiation: 'not_differentiated' },
        { shape: 'rtp', destination: 'msk', location: 'domestic', service: 'media_no_packets', control: null, differentiation: 'differentiated' },
        { shape: 'whatsapp-stun', destination: 'msk', location: 'domestic', service: null, control: null, differentiation: 'not_differentiated' },
      ],
    });
    expect(get('classify')).toMatchObject({ failure: 'media_no_packets', failedPhase: 'media' });
    // Two RTP flows (one per reflector), 300 packets each, every one dropped.
    expect(rules.classify!.packets).toBe(2 * 300);
    expect(streams('classify').map((s) => [s.role, s.shape, s.destination, s.received])).toEqual([
      ['service', 'rtp', 'classify', 0],
      ['control', 'random', 'classify', 300],
      ['service', 'whatsapp-stun', 'classify', 300],
      ['control', 'random', 'classify', 300],
      ['service', 'rtp', 'msk', 0],
      ['control', 'random', 'msk', 300],
      ['service', 'whatsapp-stun', 'msk', 300],
      ['control', 'random', 'msk', 300],
    ]);
  });

  it('l4-25 towards the foreign reflector only: destination_policy, each flow cut both ways, the counts of each direction equal to the censor\'s', () => {
    const diagnosis = evidence('l425').diagnosis as { result: string; reason: string };
    expect(diagnosis).toMatchObject({
      result: 'destination_policy',
      reason:
        'every shape, the bit-inverted controls included, failed towards the foreign reflector (l425) while all passed towards the domestic one (msk): the path is cut by where the packets go, not by what they look like',
    });
    const foreign = streams('l425').filter((s) => s.location === 'foreign');
    expect(foreign).toHaveLength(2);
    for (const s of foreign) {
      // 25 packets pass: 13 requests and 12 echoes; the 13th echo is the 26th packet.
      expect(s, s.role).toMatchObject({ failure: 'stream_cutoff', received: 12, cutoff: { afterPackets: 12 } });
      expect(s.perDirection).toMatchObject({ source: 'report', uplink: { packets: 13 }, downlink: { packets: 12 } });
      expect(s.cutDirection).toMatchObject({ direction: 'both', reflectorHighestSeq: 12, lastEchoedSeq: 11, receivedAfterLastEcho: 1 });
      expect(s.reflectorReport).toMatchObject({ answered: true, requestsSent: 1 });
    }
    const up = foreign.reduce((n, s) => ({ packets: n.packets + s.perDirection!.uplink.packets, bytes: n.bytes + s.perDirection!.uplink.bytes }), { packets: 0, bytes: 0 });
    const down = foreign.reduce((n, s) => ({ packets: n.packets + s.perDirection!.downlink.packets, bytes: n.bytes + s.perDirection!.downlink.bytes }), { packets: 0, bytes: 0 });
    expect({ packets: rules['l425-up']!.packets, bytes: rules['l425-up']!.bytes }).toEqual({ packets: up.packets, bytes: up.bytes + IPV4_UDP_HEADERS * up.packets });
    expect({ packets: rules['l425-down']!.packets, bytes: rules['l425-down']!.bytes }).toEqual({ packets: down.packets, bytes: down.bytes + IPV4_UDP_HEADERS * down.packets });
    for (const s of streams('l425').filter((x) => x.location === 'domestic')) expect(s).toMatchObject({ failure: null, received: 150 });
  });

  it('one way at a time: a cut on the way up and one on the way down are told apart, with the counts each way', () => {
    const [up] = streams('uplink');
    expect(up).toMatchObject({ failure: 'stream_cutoff', received: 20 });
    expect(up!.perDirection).toMatchObject({ source: 'report', uplink: { packets: 20 }, downlink: { packets: 20 } });
    expect(up!.cutDirection).toMatchObject({ direction: 'uplink', reflectorHighestSeq: 19, lastEchoedSeq: 19, receivedAfterLastEcho: 0 });
    expect(rules.uplink!.packets).toBe(150 - 20);
    const [down] = streams('downlink');
    expect(down).toMatchObject({ failure: 'stream_cutoff', received: 20 });
    expect(down!.perDirection).toMatchObject({ source: 'report', uplink: { packets: 150 }, downlink: { packets: 20 } });
    expect(down!.cutDirection).toMatchObject({ direction: 'downlink', reflectorHighestSeq: 149, lastEchoedSeq: 19 });
    expect(rules.downlink!.packets).toBe(150 - 20);
  });

  it('the rate sweep finds the knee of a 128 kbit/s policer within one step', () => {
    const [s] = streams('sweep');
    const knee = s!.sweep!.knee!;
    expect([128, 256]).toContain(knee.atKbps);
    expect(knee.lastCleanKbps).toBe(knee.atKbps / 2);
    // The policer's own rate, from what came back above the knee: within a tenth of 128 kbit/s (16 KiB/s = 131 kbit/s).
    expect(knee.policedIpKbps).toBeGreaterThan(0.9 * 128);
    expect(knee.policedIpKbps).toBeLessThan(1.1 * 131.072);
    expect(s!.sweep!.steps.slice(0, 2).map((x) => x.deliveredRatio)).toEqual([1, 1]);
    expect(get('sweep')).toMatchObject({ failure: 'media_throttled', failedPhase: 'media' });
    console.log(`sweep: ${s!.sweep!.steps.map((x) => `${x.offeredKbps}→${x.deliveredKbps.toFixed(1)}`).join(', ')} kbit/s; knee at ${knee.atKbps}, policed ${knee.policedIpKbps.toFixed(1)} kbit/s with headers`);
  });

  it('a byte policer with a 3000-byte burst is throttling (media_throttled), not media_degraded', () => {
    const [s] = streams('burst');
    expect(get('burst')).toMatchObject({ failure: 'media_throttled', failedPhase: 'media' });
    // The burst drained in the first two seconds (bin 0 came back whole); steady from the bin after the first loss.
    expect(s!.throttle).toMatchObject({ throttled: true });
    expect(s!.throttle!.fromMs - s!.streamStartMs).toBeCloseTo(2000, 2);
    expect(s!.throttle!.dispersion).toBeLessThan(0.25);
    console.log(`burst policer: ${JSON.stringify(s!.throttle)}`);
  });
});
