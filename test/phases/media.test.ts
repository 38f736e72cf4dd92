import { execFileSync } from 'node:child_process';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { duration } from '../../src/units.js';
import { silentLogger } from '../../src/log.js';
import { mediaPhase, mediaTimeoutNeededMs } from '../../src/phases/media/index.js';
import { getLifetime } from '../../src/protocol/stun-attributes.js';
import { buildMessage, type StunMessage } from '../../src/protocol/stun.js';
import { METHOD } from '../../src/protocol/turn.js';
import { challenge, key as turnKey, scriptedServer } from '../helpers/turn-server.js';

import { encodeMediaEcho, mediaPacketLength, verifyMediaRequest } from '../../src/protocol/media-packet.js';
import { reflectorConfigSchema } from '../../src/reflector/config.js';
import { startReflector, type Reflector } from '../../src/reflector/server.js';
import { RESULT_SCHEMA, type ProbeResult } from '../../src/result.js';
import { Metrics } from '../../src/sinks/metrics.js';
import { closedPort } from '../helpers/servers.js';
import { describeNeeding } from '../helpers/requires.js';
import { runOnce, specFor } from '../helpers/spec.js';
import { TURN_PASSWORD, TURN_USER, coturnMissing, startLoopbackCoturn, type Coturn } from '../lab/coturn.js';
const signedRefresh = (req: StunMessage): Buffer => buildMessage({ method: req.method, class: 'success', transactionId: req.transactionId, integrity: turnKey });

const KEY_HEX = '5c'.repeat(32);
const KEY = Buffer.from(KEY_HEX, 'hex');

interface Streams {
  role: string;
  shape: string;
  sent: number;
  received: number;
  lost: number;
  lossRatio: number;
  bytesSent: number;
  bytesReceived: number;
  quality: { mos: number; r: number } | null;
  pacing: { sends: number; p50Ms: number; p99Ms: number; maxMs: number };
  failure: string | null;
  cutoff: Record<string, number | boolean> | null;
  lastReceived: Record<string, number> | null;
  timeline: { binMs: number; bins: Array<Record<string, number>> };
  streamStartMs?: number;
}

/**
 * A loopback "censor" between the probe and the reflector: one upstream socket per client flow
 * (as conntrack keeps one entry per flow), forwarding what `pass` lets through.
 */
async function udpCensor(target: number, pass: (packet: Buffer, index: number) => boolean): Promise<{ port: number; close(): void }> {
  const front = createSocket('udp4');
  const flows = new Map<string, { up: UdpSocket; count: number }>();
  front.on('message', (msg: Buffer, from: RemoteInfo) => {
    const id = `${from.address}:${from.port}`;
    let flow = flows.get(id);
    if (!flow) {
      const up = createSocket('udp4');
      up.on('message', (echo: Buffer) => front.send(echo, from.port, from.address));
      up.bind(0, '127.0.0.1');
      flow = { up, count: 0 };
      flows.set(id, flow);
    }
    flow.count++;
    if (pass(msg, flow.count)) flow.up.send(msg, target, '127.0.0.1');
  });
  front.bind(0, '127.0.0.1');
  await once(front, 'listening');
  return {
    port: front.address().port,
    close: () => {
      for (const f of flows.values()) f.up.close();
      front.close();
    },
  };
}

const mediaSpec = (port: number, params: Record<string, unknown>, timeoutMs = 6000) =>
  specFor({ endpoint: { host: '127.0.0.1', port }, phases: [{ media: { durationMs: 1000, ...params } }], timeoutMs });

const withKey = { settings: { mediaKey: KEY } };
const streamsOf = (run: { phases: Array<{ evidence: Record<string, unknown> }> }): Streams[] => run.phases[0]!.evidence.streams as Streams[];

describe('media phase on loopback', () => {
  let reflector: Reflector;
  beforeAll(async () => {
    reflector = await startReflector(
      reflectorConfigSchema.parse({ key: KEY_HEX, listen: { udp: ['127.0.0.1:0'] }, metrics: { listen: '' }, limits: { packetsPerSecond: 2000, packetBurst: 2000, bytesPerSecond: '1MiB', byteBurst: '1MiB' } }),
      silentLogger(),
    );
  });
  afterAll(() => reflector.close());
  const port = () => reflector.udp[0]!.port;

  it('clean path: every packet back, loss 0, MOS above 4.2, the pacer’s own error in evidence', async () => {
    const run = await runOnce(mediaSpec(port(), { shape: 'rtp' }), withKey);
    expect(run.failure).toBeNull();
    const phase = run.phases[0]!;
    expect(phase).toMatchObject({ phase: 'media', transport: 'udp', endpoint: `127.0.0.1:${port()}`, ok: true });
    expect(phase.evidence).toMatchObject({ via: 'direct', frameMs: 20, durationMs: 1000, packetsPlanned: 50, datagramsSent: 50, datagramsReceived: 50 });
    const [s] = streamsOf(run);
    expect(s).toMatchObject({ role: 'service', shape: 'rtp', sent: 50, received: 50, lost: 0, lossRatio: 0, failure: null });
    expect(s!.bytesSent).toBe(phase.evidence.bytesSent);
    expect(s!.bytesReceived).toBe(s!.bytesSent);
    expect(s!.quality!.mos).toBeGreaterThan(4.2);
    expect(s!.pacing.sends).toBe(50);
    // The pacer's precision is a speed figure: bench/pacing.ts measures it against setInterval in one run.
    expect(s!.lastReceived).toMatchObject({ seq: 49, sentIndex: 50, receivedCount: 50 });
    expect(s!.timeline.binMs).toBe(1000);
    expect(s!.timeline.bins.reduce((n, b) => n + b.sentPackets!, 0)).toBe(50);
    // Sizes like Opus voice: 12-byte RTP header + 60..160 bytes.
    expect(s!.bytesSent).toBeGreaterThanOrEqual(50 * mediaPacketLength('rtp', 60));
    expect(s!.bytesSent).toBeLessThanOrEqual(50 * mediaPacketLength('rtp', 160));
  });

  it.each([
    ['whatsapp', '90f8'], // V=2 X=1, PT 120 (marker on the first packet)
    ['rtp', '80ef'], // V=2, PT 111 with the marker
    ['random', '7f10'], // the bit-inverse of the rtp packet above
  ])('sends the %s shape (first echo starts %s)', async (shape, head) => {
    const run = await runOnce(mediaSpec(port(), { shape, durationMs: 100 }), withKey);
    expect(run.failure).toBeNull();
    expect(String(run.phases[0]!.evidence.firstBytesHex).slice(0, 4)).toBe(head);
  });

  it('telegram and stun shapes come back too', async () => {
    for (const shape of ['telegram', 'stun']) {
      const run = await runOnce(mediaSpec(port(), { shape, durationMs: 100 }), withKey);
      expect(run.failure).toBeNull();
      expect(streamsOf(run)[0]).toMatchObject({ shape, sent: 5, received: 5 });
    }
    const stun = await runOnce(mediaSpec(port(), { shape: 'stun', durationMs: 100 }), withKey);
    // RFC 8656 §11: a Send indication, type 0x0016, magic cookie at bytes 4-7.
    expect(String(stun.phases[0]!.evidence.firstBytesHex)).toMatch(/^0016....2112a442/);
  });

  it('runs a control shape beside the service shape on its own flow, with the same sizes', async () => {
    const run = await runOnce(mediaSpec(port(), { shape: 'whatsapp', control: 'random' }), withKey);
    expect(run.failure).toBeNull();
    const [service, control] = streamsOf(run);
    expect(service).toMatchObject({ role: 'service', shape: 'whatsapp', sent: 50, received: 50 });
    expect(control).toMatchObject({ role: 'control', shape: 'random', controlOf: 'whatsapp', sent: 50, received: 50 });
    expect(control!.bytesSent).toBe(service!.bytesSent);
    expect(run.phases[0]!.evidence).toMatchObject({ datagramsSent: 100, datagramsReceived: 100 });
    expect(run.phases[0]!.evidence.differentiation).toMatchObject({ result: 'inconclusive', reason: 'too_few_samples', serviceOnlyFailure: false });
  });

  it('a stream cut after N packets per flow: stream_cutoff with N = the last echoed packet’s index', async () => {
    const censor = await udpCensor(port(), (_p, i) => i <= 30);
    try {
      const run = await runOnce(mediaSpec(censor.port, { shape: 'rtp', durationMs: 1500 }), withKey);
      expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'media' });
      const [s] = streamsOf(run);
      expect(s).toMatchObject({ sent: 75, received: 30, lost: 45, failure: 'stream_cutoff' });
      expect(s!.cutoff).toMatchObject({ cutoff: true, afterPackets: 30, receivedPackets: 30, tailPackets: 45, lossBefore: 0 });
      // Packet 30 left 29 frames after the first, give or take the pacer's own measured error; the
      // record's offsets count from the phase's start, the stream's from streamStartMs.
      expect(Math.abs((s!.cutoff!.afterMs as number) - (s!.streamStartMs as number) - 29 * 20)).toBeLessThanOrEqual(s!.pacing.maxMs + 0.02);
      expect(s!.timeline.bins[0]!.startMs).toBe(s!.streamStartMs);
      expect(run.phases[0]!.evidence.error).toMatch(/^rtp stream: stream_cutoff \(30\/75 back, loss 60\.0 %, silent after packet 30 \(\d+ bytes, [\d.]+ ms\)/);
    } finally {
      censor.close();
    }
  });

  it('the service shape dropped while its inverse passes: the evidence says the path treats it differently', async () => {
    // Drop what starts with the RTP version bits (0b10......), as a DPI rule for RTP would.
    const censor = await udpCensor(port(), (p) => (p[0]! & 0xc0) !== 0x80);
    try {
      const run = await runOnce(mediaSpec(censor.port, { shape: 'whatsapp', control: 'random' }), withKey);
      expect(run).toMatchObject({ failure: 'media_no_packets', failedPhase: 'media' });
      const [service, control] = streamsOf(run);
      expect(service).toMatchObject({ shape: 'whatsapp', sent: 50, received: 0, failure: 'media_no_packets' });
      expect(control).toMatchObject({ shape: 'random', sent: 50, received: 50, failure: null });
      const d = run.phases[0]!.evidence.differentiation as Record<string, unknown>;
      expect(d).toMatchObject({ serviceOnlyFailure: true });
      expect(d.summary).toMatch(
        /^the whatsapp-shaped stream saw media_no_packets \(loss 100\.0 %\) while the random control on the same path saw ok \(loss 0\.0 %\): the path treats the service's packets differently/,
      );
      expect(run.phases[0]!.evidence.error).toContain('the path treats the service');
    } finally {
      censor.close();
    }
  });

  it('random loss above the threshold: media_degraded with the numbers', async () => {
    // Every 10th packet dropped: 10 % loss, single-packet bursts.
    const censor = await udpCensor(port(), (_p, i) => i % 10 !== 0);
    try {
      const run = await runOnce(mediaSpec(censor.port, { shape: 'rtp', durationMs: 2000, frameMs: 10 }), withKey);
      expect(run).toMatchObject({ failure: 'media_degraded' });
      const [s] = streamsOf(run);
      expect(s).toMatchObject({ sent: 200, received: 180, lost: 20, lossRatio: 0.1 });
      expect((run.phases[0]!.evidence.streams as Array<{ degradedReasons: string[] }>)[0]!.degradedReasons).toEqual(['loss', 'mos']);
      // Thresholds are params: 15 % allowed and MOS 2 accepted -> ok.
      const lenient = await runOnce(mediaSpec(censor.port, { durationMs: 500, frameMs: 10, thresholds: { maxLossRatio: 0.15, minMos: 2 } }), withKey);
      expect(lenient.failure).toBeNull();
    } finally {
      censor.close();
    }
  });

  it('a reflector with another key echoes nothing: media_no_packets', async () => {
    // Nothing back, so no RTT to size the drain: the default waits its 2 s cap (the lab shows it); 300 ms here.
    const run = await runOnce(mediaSpec(port(), { durationMs: 200, drainMs: 300 }), { settings: { mediaKey: Buffer.alloc(32, 9) } });
    expect(run).toMatchObject({ failure: 'media_no_packets', failedPhase: 'media' });
    expect(streamsOf(run)[0]).toMatchObject({ sent: 10, received: 0, lossRatio: 1, quality: null });
    expect(run.phases[0]!.evidence).toMatchObject({ datagramsSent: 10, datagramsReceived: 0 });
  });

  it('nothing listening (ICMP port unreachable): connection_refused, not silence', async () => {
    const run = await runOnce(mediaSpec(await closedPort(), { durationMs: 200, drainMs: 300 }), withKey);
    expect(run).toMatchObject({ failure: 'connection_refused', failedPhase: 'media' });
    expect(run.phases[0]!.evidence.error).toBe('ECONNREFUSED');
  });

  it('the reflector goes away mid-stream (ICMP port unreachable): connection_refused with the packets really sent, not a cut-off', async () => {
    // A reflector that echoes 10 authentic packets, then closes its port: the 11th packet gets an
    // ICMP port unreachable, which ends the probe's socket before the 12th.
    const gone = createSocket('udp4');
    let echoed = 0;
    gone.on('message', (msg: Buffer, from: RemoteInfo) => {
      const request = verifyMediaRequest(msg, KEY);
      if (echoed >= 10 || request === null) return;
      echoed++;
      gone.send(encodeMediaEcho(request, KEY, { packets: echoed, bytes: echoed * msg.length }), from.port, from.address, () => echoed === 10 && gone.close());
    });
    gone.bind(0, '127.0.0.1');
    await once(gone, 'listening');
    const run = await runOnce(mediaSpec(gone.address().port, { shape: 'rtp', durationMs: 1000 }), withKey);
    expect(run).toMatchObject({ failure: 'connection_refused', failedPhase: 'media' });
    const phase = run.phases[0]!;
    expect(phase.evidence).toMatchObject({ error: 'ECONNREFUSED', packetsPlanned: 50, datagramsSent: 11, datagramsReceived: 10 });
    const [s] = streamsOf(run);
    expect(s).toMatchObject({ sent: 11, received: 10, lost: 1, pathError: 'ECONNREFUSED', drainMs: 0 });
    expect(s!.pacing.sends).toBe(11);
    expect(s!.bytesSent).toBe(phase.evidence.bytesSent);
    // It stopped at the failure, not after the 50 planned packets and a drain: 11 sends, no drain (above).
  });

  it('refuses to run without the reflector key, or when the phase timeout cannot hold the stream', async () => {
    const noKey = await runOnce(mediaSpec(port(), {}));
    expect(noKey).toMatchObject({ failure: 'internal_error' });
    expect(noKey.phases[0]!.evidence.error).toBe('media: needs media.reflectorKey in the config (the key of the reflector)');
    const short = await runOnce(mediaSpec(port(), { durationMs: 20_000 }, 10_000), withKey);
    expect(short).toMatchObject({ failure: 'internal_error' });
    expect(short.phases[0]!.evidence.timeoutMs).toBe(10_000);
    expect(short.phases[0]!.evidence.bytesSent).toBeUndefined(); // nothing was sent
    expect(short.phases[0]!.evidence.error).toMatch(/^media: phaseTimeout 10000 ms is shorter than the stream \(20000 ms\) \+ drain \(2000 ms\)/);
  });

  it('sends nothing to a destination outside the allowlist: policy_denied', async () => {
    const run = await runOnce(mediaSpec(port(), {}), { ...withKey, allow: ['198.18.0.0/15'] });
    expect(run).toMatchObject({ failure: 'policy_denied', failedPhase: 'media' });
  });

  it('validates its parameters', () => {
    const problems = (p: unknown) => {
      const r = mediaPhase.params.safeParse(p);
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(problems({})).toEqual([]);
    expect(problems({ via: 'turn' })).toEqual(['peer: via: turn needs peer: the reflector as IP:PORT']);
    expect(problems({ via: 'turn', peer: 'reflector.example:3480' })).toEqual(['peer: must be IP:PORT (an IP literal, IPv6 in brackets, and a port)']);
    expect(problems({ peer: '198.18.2.2:3480' })).toEqual(['peer: peer is only for via: turn (direct goes to the target)']);
    expect(problems({ shape: 'rtp', controlOf: 'whatsapp' })).toEqual(['controlOf: controlOf is only for shape: random']);
    expect(problems({ shape: 'opus' })[0]).toMatch(/^shape: Invalid option/);
    expect(problems({ durationMs: 50 })[0]).toMatch(/^durationMs: /);
  });

  it('every media target in the shipped catalogues has a phaseTimeout that holds its stream and drain', () => {
    const dir = join(import.meta.dirname, '..', '..', 'probes');
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
      const cat = parseYaml(readFileSync(join(dir, file), 'utf8')) as { targets: Array<{ name: string; phaseTimeout?: string; phases: unknown[] }> };
      for (const t of cat.targets) {
        for (const ph of t.phases) {
          if (typeof ph !== 'object' || ph === null || !('media' in ph)) continue;
          const needed = mediaTimeoutNeededMs(mediaPhase.params.parse((ph as { media: unknown }).media ?? {}));
          expect(t.phaseTimeout, `${file} ${t.name}: phaseTimeout (the 10 s default is shorter than a 20 s stream)`).toBeDefined();
          expect(duration.parse(t.phaseTimeout), `${file} ${t.name}`).toBeGreaterThanOrEqual(needed);
        }
      }
    }
    // The stream, the longest drain, the report after it, the margin.
    expect(mediaTimeoutNeededMs(mediaPhase.params.parse({}))).toBe(20_000 + 2000 + 1000 + 300);
  });

  it('metrics: loss, jitter, MOS and cut-off gauges per shape from the evidence, accepted by promtool', async () => {
    const censor = await udpCensor(port(), (_p, i) => i <= 30);
    try {
      const run = await runOnce(mediaSpec(censor.port, { shape: 'whatsapp', control: 'random', durationMs: 1500 }, 6000), withKey);
      const m = new Metrics('lab');
      const result: ProbeResult = { ...run, schema: RESULT_SCHEMA, verdict: 'degraded', control: null, scope: null };
      m.observe(result);
      const text = await m.registry.metrics();
      const [service] = streamsOf(run);
      expect(text).toContain(`callprobe_media_loss_ratio{service="test",target="t",shape="whatsapp"} 0.6`);
      expect(text).toContain(`callprobe_media_loss_ratio{service="test",target="t",shape="random"} 0.6`);
      expect(text).toContain(`callprobe_stream_cutoff_packets{service="test",target="t",shape="whatsapp"} 30`);
      expect(text).toContain(`callprobe_stream_cutoff_bytes{service="test",target="t",shape="whatsapp"} ${service!.cutoff!.afterBytesSent}`);
      expect(text).toContain(`callprobe_media_mos{service="test",target="t",shape="whatsapp"} ${service!.quality!.mos}`);
      expect(text).toMatch(/callprobe_media_jitter_seconds\{service="test",target="t",shape="random"\} [\d.e-]+/);
      expect(execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })).toBe('');
    } finally {
      censor.close();
    }
  });
});

describeNeeding(coturnMissing(), 'media phase through a TURN relay (coturn on loopback)', () => {
  let reflector: Reflector;
  let coturn: Coturn;
  beforeAll(async () => {
    reflector = await startReflector(reflectorConfigSchema.parse({ key: KEY_HEX, listen: { udp: ['127.0.0.1:0'] }, metrics: { listen: '' } }), silentLogger());
    coturn = await startLoopbackCoturn({ allowLoopbackPeers: true });
  }, 20_000);
  afterAll(async () => {
    await coturn?.stop();
    await reflector?.close();
  });

  it('allocates, binds a channel to the reflector, streams as ChannelData and releases', async () => {
    const spec = specFor({
      endpoint: { host: '127.0.0.1', port: coturn.port },
      phases: [{ media: { via: 'turn', peer: `127.0.0.1:${reflector.udp[0]!.port}`, credential: 'lab', shape: 'whatsapp', control: 'random', durationMs: 1000 } }],
      timeoutMs: 8000,
    });
    const run = await runOnce(spec, { settings: { mediaKey: KEY, turnCredentials: new Map([['lab', { username: TURN_USER, password: TURN_PASSWORD }]]) } });
    expect(run.failure).toBeNull();
    const ev = run.phases[0]!.evidence;
    expect(ev).toMatchObject({ via: 'turn', peer: `127.0.0.1:${reflector.udp[0]!.port}` });
    const relays = ev.relays as Array<Record<string, unknown>>;
    expect(relays).toHaveLength(2);
    for (const r of relays) {
      expect(r).toMatchObject({ released: true, relayedAddress: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
      expect(r.channel).toBeGreaterThanOrEqual(0x4000);
    }
    const [service, control] = streamsOf(run);
    expect(service).toMatchObject({ shape: 'whatsapp', sent: 50, received: 50, lossRatio: 0 });
    expect(control).toMatchObject({ shape: 'random', sent: 50, received: 50, lossRatio: 0 });
    // Each media packet rides in ChannelData: 4 more bytes on the wire each way.
    expect(ev.bytesSent as number).toBeGreaterThan(service!.bytesSent + control!.bytesSent + 100 * 4);
  });

  it('wrong credentials: the TURN failure code, nothing streamed', async () => {
    const spec = specFor({
      endpoint: { host: '127.0.0.1', port: coturn.port },
      phases: [{ media: { via: 'turn', peer: `127.0.0.1:${reflector.udp[0]!.port}`, durationMs: 200 } }],
      timeoutMs: 6000,
    });
    const run = await runOnce(spec, { settings: { mediaKey: KEY, turnCredentials: new Map([['t', { username: TURN_USER, password: 'wrong' }]]) } });
    expect(run).toMatchObject({ failure: 'turn_unauthorized', failedPhase: 'media' });
    expect(run.phases[0]!.evidence.streams).toBeUndefined();
  });
});

describe('media phase through a TURN relay whose Allocate answer is lost', () => {
  it('releases the allocation the server may hold, within releaseWaitMs, and says so in the evidence', async () => {
    // The server allocates but its answers to Allocate never arrive; it answers the Refresh.
    const server = await scriptedServer((req, n) => (n === 1 ? [challenge(req, 401, 'n1')] : req.method === METHOD.ALLOCATE ? [] : [signedRefresh(req)]));
    try {
      const spec = specFor({
        endpoint: { host: '127.0.0.1', port: server.port },
        phases: [{ media: { via: 'turn', peer: '127.0.0.1:3480', credential: 'lab', durationMs: 200, releaseWaitMs: 500 } }],
        timeoutMs: 4200,
      });
      const run = await runOnce(spec, { settings: { mediaKey: KEY, turnCredentials: new Map([['lab', { username: TURN_USER, password: TURN_PASSWORD }]]) } });
      expect(run).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'media' });
      expect(run.phases[0]!.evidence.relays).toEqual([expect.objectContaining({ released: true })]);
      const refresh = server.requests.at(-1)!;
      expect([refresh.method, getLifetime(refresh)]).toEqual([METHOD.REFRESH, 0]);
    } finally {
      server.close();
    }
  });

  it('a relayed stream that names TURN credentials the config lacks is refused by the plan, not failed at run time', () => {
    const problem = mediaPhase.check!(mediaPhase.params.parse({ via: 'turn', peer: '198.18.2.2:3480', credential: 'relay', durationMs: 1000 }), {
      target: 'turn-relay',
      endpoint: { host: '198.18.2.2', port: 3478 },
      timeoutMs: 10_000,
      settings: { resolver: null, extraCa: [], userAgent: 'test', mediaKey: KEY, turnCredentials: new Map() },
      before: [],
    });
    expect(problem).toBe('needs credentials "relay" in the config\'s turn section');
  });
});
