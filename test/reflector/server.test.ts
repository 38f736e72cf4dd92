import { execFileSync, spawn } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger, type Logger } from '../../src/log.js';
import { MEDIA_SHAPES, cryptoRng, decodeMediaEcho, encodeMediaPacket } from '../../src/protocol/media-packet.js';
import { REPORT_REPLY_LENGTH, decodeReportReply, encodeReportRequest } from '../../src/protocol/media-report.js';
import { reflectorConfigSchema } from '../../src/reflector/config.js';
import { MAX_REFLECTOR_FRAME_LENGTH, STREAM_PROOF_LENGTH, encodeFrame, encodeStreamRequest, refusalReason } from '../../src/protocol/reflector.js';
import { ReflectorMetrics } from '../../src/reflector/metrics.js';
import { ACK_RECORD_LENGTH, RecordReader } from '../../src/protocol/stream-records.js';
import { containErrors, startReflector, type Reflector } from '../../src/reflector/server.js';
import { createLabCa, type LabCa } from '../lab/ca.js';
import { asV1Request } from '../helpers/media.js';

const KEY_HEX = '42'.repeat(32);
const KEY = Buffer.from(KEY_HEX, 'hex');
const OTHER_KEY = Buffer.alloc(32, 1);

function packet(seq: number, opts: { key?: Buffer; shape?: (typeof MEDIA_SHAPES)[number]; flowId?: number } = {}): Buffer {
  return encodeMediaPacket({
    shape: opts.shape ?? 'rtp',
    flowId: opts.flowId ?? 7,
    seq,
    sendTimeUs: 1_000_000 + seq,
    payloadSize: 100,
    key: opts.key ?? KEY,
    rng: cryptoRng,
  });
}

async function udpClient(): Promise<{ socket: UdpSocket; got: Buffer[] }> {
  const socket = createSocket('udp4');
  const got: Buffer[] = [];
  socket.on('message', (m) => got.push(m));
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { socket, got };
}

const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

async function start(over: Record<string, unknown> = {}, limits: Record<string, unknown> = {}): Promise<Reflector> {
  return startReflector(
    reflectorConfigSchema.parse({ key: KEY_HEX, listen: { udp: ['127.0.0.1:0'], tcp: ['127.0.0.1:0'] }, metrics: { listen: '127.0.0.1:0' }, limits, ...over }),
    silentLogger(),
  );
}

async function metricsText(r: Reflector): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${r.metricsAddress!.port}/metrics`);
  return res.text();
}

/** Reads exactly what a TCP peer sends until it goes quiet for `quietMs` (or closes). */
function collect(socket: Socket, quietMs = 300): Promise<{ bytes: Buffer; ended: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let ended = false;
    let timer = setTimeout(done, quietMs);
    function done(): void {
      socket.removeAllListeners('data');
      resolve({ bytes: Buffer.concat(chunks), ended });
    }
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      clearTimeout(timer);
      timer = setTimeout(done, quietMs);
    });
    socket.once('end', () => {
      ended = true;
      clearTimeout(timer);
      done();
    });
  });
}

async function tcpTo(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  return s;
}

describe('reflector over UDP', () => {
  let r: Reflector;
  beforeAll(async () => {
    r = await start();
  });
  afterAll(() => r.close());

  it('echoes an authentic packet of every shape with its flow counts, the same length, and nothing else', async () => {
    const c = await udpClient();
    const sent = MEDIA_SHAPES.map((shape, i) => packet(i, { shape, flowId: 100 + i }));
    for (const p of sent) c.socket.send(p, r.udp[0]!.port, '127.0.0.1');
    c.socket.send(packet(9, { key: OTHER_KEY }), r.udp[0]!.port, '127.0.0.1');
    const tampered = packet(10);
    tampered[20]! ^= 0xff;
    c.socket.send(tampered, r.udp[0]!.port, '127.0.0.1');
    c.socket.send(Buffer.from('hello'), r.udp[0]!.port, '127.0.0.1');
    await settle();
    c.socket.close();
    const echoes = c.got.map((g) => decodeMediaEcho(g, KEY)).sort((a, b) => a.seq - b.seq);
    expect(echoes.map((e) => [e.shape, e.flowId, e.seq, e.received.packets, e.received.bytes, e.length])).toEqual(
      sent.map((p, i) => [MEDIA_SHAPES[i], 100 + i, i, 1, p.length, p.length]),
    );
    const text = await metricsText(r);
    expect(text).toContain(`callprobe_reflector_packets_total{transport="udp",result="echoed"} ${MEDIA_SHAPES.length}`);
    expect(text).toContain('callprobe_reflector_packets_total{transport="udp",result="bad_tag"} 3');
    const inBytes = sent.reduce((n, p) => n + p.length, 0) + packet(0).length * 2 + 5;
    expect(text).toContain(`callprobe_reflector_bytes_total{transport="udp",direction="in"} ${inBytes}`);
    expect(text).toContain(`callprobe_reflector_bytes_total{transport="udp",direction="out"} ${sent.reduce((n, p) => n + p.length, 0)}`);
  });

  it('counts each flow in its echoes and answers a report about it from another socket of the same host', async () => {
    const c = await udpClient();
    const sent = [0, 1, 2, 4].map((seq) => packet(seq, { flowId: 4242 }));
    for (const p of sent) {
      c.socket.send(p, r.udp[0]!.port, '127.0.0.1');
      await settle(20);
    }
    await settle();
    c.socket.close();
    expect(c.got.map((g) => decodeMediaEcho(g, KEY).received)).toEqual([1, 2, 3, 4].map((n) => ({ packets: n, bytes: n * sent[0]!.length })));
    const asker = await udpClient();
    const request = encodeReportRequest(4242, KEY);
    const unknown = encodeReportRequest(4243, KEY);
    asker.socket.send(request.bytes, r.udp[0]!.port, '127.0.0.1');
    await settle(50);
    asker.socket.send(unknown.bytes, r.udp[0]!.port, '127.0.0.1');
    await settle();
    asker.socket.close();
    expect(asker.got.map((g) => g.length)).toEqual([REPORT_REPLY_LENGTH, REPORT_REPLY_LENGTH]);
    expect(decodeReportReply(asker.got[0]!, request, KEY)).toEqual({ packets: 4, bytes: 4 * sent[0]!.length, highestSeq: 4, echoed: 4 });
    expect(decodeReportReply(asker.got[1]!, unknown, KEY)).toEqual({ packets: 0, bytes: 0, highestSeq: null, echoed: 0 });
  });

  it('echoes a v1 request (an older prober) byte for byte, as before the counts', async () => {
    const c = await udpClient();
    const old = asV1Request(packet(0, { flowId: 77 }), KEY);
    c.socket.send(old, r.udp[0]!.port, '127.0.0.1');
    await settle();
    c.socket.close();
    expect(c.got.map((g) => g.toString('hex'))).toEqual([old.toString('hex')]);
  });

  it('serves /healthz and a /metrics page promtool accepts', async () => {
    const health = await fetch(`http://127.0.0.1:${r.metricsAddress!.port}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok' });
    expect((await fetch(`http://127.0.0.1:${r.metricsAddress!.port}/other`)).status).toBe(404);
    const out = execFileSync('promtool', ['check', 'metrics'], { input: await metricsText(r), encoding: 'utf8' });
    expect(out).toBe('');
  });
});

describe('reflector event handlers', () => {
  it('an exception in a handler is counted and logged (at most once a minute), never thrown to the emitter', async () => {
    const metrics = new ReflectorMetrics();
    const logged: unknown[] = [];
    const log = { error: (...args: unknown[]) => logged.push(args) } as unknown as Logger;
    const contain = containErrors(metrics, log);
    const handler = contain((n: number) => {
      throw new Error(`bug ${n}`);
    });
    expect(() => handler(1)).not.toThrow();
    expect(() => handler(2)).not.toThrow();
    expect(logged).toHaveLength(1);
    expect(((logged[0] as unknown[])[0] as { err: Error }).err.message).toBe('bug 1');
    expect(await metrics.registry.getSingleMetricAsString('callprobe_reflector_handler_errors_total')).toContain('callprobe_reflector_handler_errors_total 2');
    // What does not throw runs as it is.
    let got = 0;
    contain((n: number) => void (got = n))(7);
    expect(got).toBe(7);
  });
});

describe('reflector limits', () => {
  it('echoes exactly the packet burst per source, then refuses (counted), before checking tags', async () => {
    const r = await start({}, { packetBurst: 5, packetsPerSecond: 0.001 });
    try {
      const c = await udpClient();
      for (let i = 0; i < 8; i++) c.socket.send(packet(i), r.udp[0]!.port, '127.0.0.1');
      c.socket.send(packet(8, { key: OTHER_KEY }), r.udp[0]!.port, '127.0.0.1');
      await settle();
      c.socket.close();
      expect(c.got.length).toBe(5);
      const text = await metricsText(r);
      expect(text).toContain('callprobe_reflector_packets_total{transport="udp",result="echoed"} 5');
      expect(text).toContain('callprobe_reflector_packets_total{transport="udp",result="rate_limited"} 4');
      expect(text).toContain('callprobe_reflector_packets_total{transport="udp",result="bad_tag"} 0');
    } finally {
      await r.close();
    }
  });

  it('checks tags from unknown sources only as the unauthenticated bucket allows, and keeps no state for them', async () => {
    const r = await start({}, { unauthenticatedBurst: 5, unauthenticatedPacketsPerSecond: 0.001 });
    try {
      const c = await udpClient();
      for (let i = 0; i < 20; i++) c.socket.send(packet(i, { key: OTHER_KEY }), r.udp[0]!.port, '127.0.0.1');
      await settle();
      // The bucket is empty now: even an authentic packet from this still unknown source waits.
      c.socket.send(packet(20), r.udp[0]!.port, '127.0.0.1');
      await settle();
      c.socket.close();
      expect(c.got.length).toBe(0);
      const text = await metricsText(r);
      expect(text).toContain('callprobe_reflector_packets_total{transport="udp",result="bad_tag"} 5');
      expect(text).toContain('callprobe_reflector_packets_total{transport="udp",result="unauthenticated_limited"} 16');
      expect(text).toContain('callprobe_reflector_sources 0');
    } finally {
      await r.close();
    }
  });

  it('when the source table is full, a new authentic source takes the place of the least recently used', async () => {
    const r = await start({}, { maxSources: 1 });
    try {
      const a = await udpClient();
      const b = createSocket('udp4');
      const gotB: Buffer[] = [];
      b.on('message', (m) => gotB.push(m));
      b.bind(0, '127.0.0.2');
      await once(b, 'listening');
      a.socket.send(packet(0), r.udp[0]!.port, '127.0.0.1');
      await settle();
      b.send(packet(1), r.udp[0]!.port, '127.0.0.1');
      await settle();
      a.socket.send(packet(2), r.udp[0]!.port, '127.0.0.1');
      await settle();
      a.socket.close();
      b.close();
      expect([a.got.length, gotB.length]).toEqual([2, 1]);
      const text = await metricsText(r);
      expect(text).toContain('callprobe_reflector_source_evictions_total 2');
      expect(text).toContain('callprobe_reflector_sources 1');
      expect(text).toContain('callprobe_reflector_packets_total{transport="udp",result="echoed"} 3');
    } finally {
      await r.close();
    }
  });

  it('caps bytes per source as well as packets', async () => {
    const r = await start({}, { byteBurst: 3 * packet(0).length, bytesPerSecond: 1 });
    try {
      const c = await udpClient();
      for (let i = 0; i < 6; i++) c.socket.send(packet(i), r.udp[0]!.port, '127.0.0.1');
      await settle();
      c.socket.close();
      expect(c.got.length).toBe(3);
    } finally {
      await r.close();
    }
  });

  it('forgets UDP sources idle for idleTimeout (the sweep runs every second at most)', async () => {
    const r = await start({}, { idleTimeout: '300ms' });
    try {
      const c = await udpClient();
      c.socket.send(packet(0), r.udp[0]!.port, '127.0.0.1');
      await settle();
      expect(await metricsText(r)).toContain('callprobe_reflector_sources 1');
      await settle(1300);
      c.socket.close();
      expect(await metricsText(r)).toContain('callprobe_reflector_sources 0');
    } finally {
      await r.close();
    }
  });

  it('closes TCP connections idle for idleTimeout, and refuses connections over the per-source limit', async () => {
    const r = await start({}, { idleTimeout: '300ms', maxConnectionsPerSource: 1 });
    try {
      const first = await tcpTo(r.tcp[0]!.port);
      const t0 = performance.now();
      const second = await tcpTo(r.tcp[0]!.port);
      await once(second, 'close'); // refused at once
      expect(performance.now() - t0).toBeLessThan(250);
      await once(first, 'close');
      const idle = performance.now() - t0;
      expect(idle).toBeGreaterThanOrEqual(290);
      expect(idle).toBeLessThan(1500);
      const text = await metricsText(r);
      expect(text).toContain('callprobe_reflector_refused_connections_total 1');
      expect(text).toContain('callprobe_reflector_closed_connections_total{reason="idle"} 1');
    } finally {
      await r.close();
    }
  });
});

describe('reflector over TCP and TLS', () => {
  let r: Reflector;
  let dir: string;
  let ca: LabCa;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-reflector-'));
    ca = await createLabCa(join(dir, 'ca'));
    const cert = await ca.issue(['reflector.lab.test'], { ips: ['127.0.0.1'] });
    r = await start(
      { listen: { tcp: ['127.0.0.1:0'], tls: [{ listen: '127.0.0.1:0', cert: cert.certPath, key: cert.keyPath }] } },
      { streamMaxBytes: '1MiB', streamsPerMinute: 2 },
    );
  }, 60_000);
  afterAll(async () => {
    await r.close();
    await ca.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('echoes RFC 4571-framed authentic packets and drops the others', async () => {
    const s = await tcpTo(r.tcp[0]!.port);
    const good = packet(1);
    const bad = packet(2, { key: OTHER_KEY });
    // Split a frame across writes: framing must not depend on segment boundaries.
    const wire = Buffer.concat([encodeFrame(good), encodeFrame(bad), encodeFrame(good)]);
    s.write(wire.subarray(0, 3));
    s.write(wire.subarray(3));
    const { bytes, ended } = await collect(s);
    s.destroy();
    expect(ended).toBe(false);
    expect(bytes.equals(Buffer.concat([encodeFrame(good), encodeFrame(good)]))).toBe(true);
  });

  it('answers a stream request with the proof and exactly N random bytes, then keeps the connection open', async () => {
    const s = await tcpTo(r.tcp[0]!.port);
    const req = encodeStreamRequest(100_000, KEY);
    s.write(encodeFrame(req.bytes));
    const { bytes, ended } = await collect(s);
    s.destroy();
    expect(ended).toBe(false);
    expect(bytes.length).toBe(STREAM_PROOF_LENGTH + 100_000);
    expect(bytes.subarray(0, STREAM_PROOF_LENGTH).equals(req.proof)).toBe(true);
  });

  it('does the same over TLS', async () => {
    const s = tlsConnect({ port: r.tls[0]!.port, host: '127.0.0.1', servername: 'reflector.lab.test', ca: ca.caCertPem });
    await once(s, 'secureConnect');
    const req = encodeStreamRequest(70_000, KEY);
    s.write(encodeFrame(req.bytes));
    const { bytes } = await collect(s as unknown as Socket);
    s.destroy();
    expect(bytes.length).toBe(STREAM_PROOF_LENGTH + 70_000);
    expect(bytes.subarray(0, STREAM_PROOF_LENGTH).equals(req.proof)).toBe(true);
  });

  it('refuses a request above streamMaxBytes or beyond streamsPerMinute with the authenticated refusal for the reason, then FIN', async () => {
    const big = await tcpTo(r.tcp[0]!.port);
    const tooLarge = encodeStreamRequest(1024 * 1024 + 1, KEY);
    big.write(encodeFrame(tooLarge.bytes));
    const a = await collect(big);
    big.destroy();
    expect(a.ended).toBe(true);
    expect(a.bytes.equals(tooLarge.refusals.too_large)).toBe(true);
    expect(refusalReason(a.bytes, tooLarge)).toBe('too_large');
    // streamsPerMinute 2: the two tests above used both.
    const again = await tcpTo(r.tcp[0]!.port);
    const limited = encodeStreamRequest(10, KEY);
    again.write(encodeFrame(limited.bytes));
    const b = await collect(again);
    again.destroy();
    expect(b.ended).toBe(true);
    expect(refusalReason(b.bytes, limited)).toBe('rate_limited');
    expect(b.bytes.length).toBe(STREAM_PROOF_LENGTH);
    const text = await metricsText(r);
    expect(text).toContain('callprobe_reflector_stream_requests_total{transport="tcp",result="served"} 1');
    expect(text).toContain('callprobe_reflector_stream_requests_total{transport="tls",result="served"} 1');
    expect(text).toContain('callprobe_reflector_stream_requests_total{transport="tcp",result="too_large"} 1');
    expect(text).toContain('callprobe_reflector_stream_requests_total{transport="tcp",result="rate_limited"} 1');
  });
});

describe('reflector stream tests that upload', () => {
  let r: Reflector;
  beforeAll(async () => {
    r = await start({ listen: { tcp: ['127.0.0.1:0'] } }, { streamMaxBytes: '1MiB', streamsPerMinute: 100 });
  });
  afterAll(() => r.close());

  /**
   * Sends an upload or both-way request, waits for the proof, then sends `writes` (pausing
   * between them so each is read on its own), and reads the reply to the end.
   */
  async function uploadTest(direction: 'upload' | 'both', n: number, writes: Buffer[]): Promise<{ reply: Buffer; sent: number; acks: number[]; data: number }> {
    const s = await tcpTo(r.tcp[0]!.port);
    const req = encodeStreamRequest(n, KEY, { direction });
    s.write(encodeFrame(req.bytes));
    const replying = collect(s, 400);
    for (const w of writes) {
      await settle(5);
      s.write(w);
    }
    const { bytes } = await replying;
    s.destroy();
    expect(bytes.subarray(0, STREAM_PROOF_LENGTH).equals(req.proof)).toBe(true);
    const records = new RecordReader(KEY, req.tag).push(bytes.subarray(STREAM_PROOF_LENGTH));
    return {
      reply: bytes,
      sent: 2 + 48 + writes.reduce((t, w) => t + w.length, 0),
      acks: records.flatMap((x) => (x.kind === 'ack' ? [x.received] : [])),
      data: records.reduce((t, x) => t + (x.kind === 'data' ? x.bytes : 0), 0),
    };
  }

  it('upload: acknowledges each read as it arrives, up to N, and never answers more bytes than it got', async () => {
    const got = await uploadTest('upload', 5000, Array.from({ length: 5 }, () => Buffer.alloc(1000, 7)));
    expect(got.acks).toEqual([1000, 2000, 3000, 4000, 5000]);
    expect(got.data).toBe(0);
    expect(got.reply.length).toBe(STREAM_PROOF_LENGTH + 5 * ACK_RECORD_LENGTH);
    expect(got.reply.length).toBeLessThanOrEqual(got.sent);
  });

  it('upload a byte at a time: acks held back to stay within what arrived, the final count always acknowledged', async () => {
    const got = await uploadTest('upload', 40, Array.from({ length: 40 }, () => Buffer.of(1)));
    // Budget: the 50 request bytes and the upload, less the 16-byte proof: 34 + k after byte k, less
    // 15 per ack sent; an ack only while one more fits for the final count (30), the final one at 15.
    expect(got.acks).toEqual([1, 11, 26, 40]);
    expect(got.reply.length).toBe(STREAM_PROOF_LENGTH + 4 * ACK_RECORD_LENGTH);
    expect(got.reply.length).toBeLessThanOrEqual(got.sent);
  });

  it('counts nothing beyond N', async () => {
    const got = await uploadTest('upload', 1500, [Buffer.alloc(1000), Buffer.alloc(1000), Buffer.alloc(1000)]);
    expect(got.acks).toEqual([1000, 1500]);
  });

  it('both: N bytes of download in records while it acknowledges the N bytes of upload', async () => {
    const got = await uploadTest('both', 70_000, Array.from({ length: 7 }, () => Buffer.alloc(10_000, 3)));
    expect(got.data).toBe(70_000);
    expect(got.acks.at(-1)).toBe(70_000);
    expect(got.acks).toEqual([...got.acks].sort((a, b) => a - b));
  });

  it('holds an upload to streamMaxBytes as a download: the authenticated refusal, then FIN', async () => {
    const s = await tcpTo(r.tcp[0]!.port);
    const req = encodeStreamRequest(1024 * 1024 + 1, KEY, { direction: 'upload' });
    s.write(encodeFrame(req.bytes));
    const { bytes, ended } = await collect(s);
    s.destroy();
    expect(ended).toBe(true);
    expect(refusalReason(bytes, req)).toBe('too_large');
  });
});

describe('reflector connections that misbehave', () => {
  let r: Reflector;
  let dir: string;
  let ca: LabCa;
  let certPaths: { certPath: string; keyPath: string };
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-reflector-conn-'));
    ca = await createLabCa(join(dir, 'ca'));
    certPaths = await ca.issue(['reflector.lab.test'], { ips: ['127.0.0.1'] });
    // Byte limits out of the way: the peer below may echo as fast as loopback goes.
    r = await start({}, { bytesPerSecond: '1GiB', byteBurst: '1GiB', packetsPerSecond: 1e6, packetBurst: 1e6 });
  }, 60_000);
  afterAll(async () => {
    await r.close();
    await ca.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('closes a connection whose peer sends authentic frames but never reads the echoes (backlog over 256 KiB)', async () => {
    const s = await tcpTo(r.tcp[0]!.port);
    s.pause(); // never reads: the echoes pile up in the kernel, then in the reflector
    const frame = encodeFrame(encodeMediaPacket({ shape: 'rtp', flowId: 1, seq: 0, sendTimeUs: 1, payloadSize: 1024, key: KEY, rng: cryptoRng }));
    // The reflector's close reaches us as an RST (it had unread data): wait for 'close', not once() (which rejects on 'error').
    s.on('error', () => {});
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    // 64 MiB at most: far more than the kernel's buffers on both sides and the 256 KiB backlog.
    const block = Buffer.concat(new Array<Buffer>(64).fill(frame));
    let written = 0;
    while (!s.destroyed && written < 64 * 1024 * 1024) {
      // once() rejects on the socket's 'error' (the RST that ends this): that ends the loop too.
      if (!s.write(block)) await Promise.race([once(s, 'drain'), closed]).catch(() => {});
      written += block.length;
    }
    await closed;
    const text = await metricsText(r);
    expect(text).toContain('callprobe_reflector_closed_connections_total{reason="backlog"} 1');
    expect(text).toContain('callprobe_reflector_connections{transport="tcp"} 0');
    const echoed = Number(/callprobe_reflector_packets_total\{transport="tcp",result="echoed"\} (\d+)/.exec(text)![1]);
    expect(echoed * frame.length).toBeLessThan(written);
  });

  it('closes a connection at once when a length header exceeds the largest media packet', async () => {
    for (const length of [MAX_REFLECTOR_FRAME_LENGTH + 1, 0xffff]) {
      const s = await tcpTo(r.tcp[0]!.port);
      const good = packet(1);
      const header = Buffer.alloc(2);
      header.writeUInt16BE(length);
      // An authentic frame first: it is echoed; the oversized header ends the connection.
      s.write(Buffer.concat([encodeFrame(good), header, Buffer.alloc(10)]));
      const { bytes, ended } = await collect(s);
      expect(bytes.equals(encodeFrame(good))).toBe(true);
      expect(ended || s.destroyed || s.readableEnded).toBe(true);
      s.destroy();
    }
    expect(await metricsText(r)).toContain('callprobe_reflector_closed_connections_total{reason="oversized_frame"} 2');
  });

  it('TLS: limits connections per source before the handshake, and closes handshakes that do not finish in handshakeTimeout', async () => {
    const t = await start(
      { listen: { tls: [{ listen: '127.0.0.1:0', cert: certPaths.certPath, key: certPaths.keyPath }] } },
      { maxConnectionsPerSource: 2, handshakeTimeout: '300ms' },
    );
    try {
      const port = t.tls[0]!.port;
      const t0 = performance.now();
      // Three raw TCP connections that never send a ClientHello.
      const raws = [await tcpTo(port), await tcpTo(port), await tcpTo(port)];
      const closedAt = raws.map((s) => once(s, 'close').then(() => performance.now() - t0));
      const [first, second, third] = await Promise.all(closedAt);
      expect(third!).toBeLessThan(250); // refused at once, no handshake started
      for (const ms of [first!, second!]) {
        expect(ms).toBeGreaterThanOrEqual(290);
        expect(ms).toBeLessThan(2000);
      }
      const text = await metricsText(t);
      expect(text).toContain('callprobe_reflector_refused_connections_total 1');
      expect(text).toContain('callprobe_reflector_closed_connections_total{reason="handshake_timeout"} 2');
      // The slots are free again: a real client completes its handshake.
      const ok = tlsConnect({ port, host: '127.0.0.1', servername: 'reflector.lab.test', ca: ca.caCertPem });
      await once(ok, 'secureConnect');
      ok.destroy();
    } finally {
      await t.close();
    }
  });

  it('limits connections in all across listeners (maxConnections)', async () => {
    const t = await start({ listen: { tcp: ['127.0.0.1:0', '127.0.0.1:0'] } }, { maxConnections: 2 });
    try {
      const a = await tcpTo(t.tcp[0]!.port);
      const b = await tcpTo(t.tcp[1]!.port);
      const c = await tcpTo(t.tcp[1]!.port);
      await once(c, 'close');
      expect(a.destroyed || b.destroyed).toBe(false);
      expect(await metricsText(t)).toContain('callprobe_reflector_refused_connections_total 1');
      a.destroy();
      b.destroy();
    } finally {
      await t.close();
    }
  });
});

describe('callprobe reflector --config', () => {
  it('logs where it listens (never the key) and stops on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'callprobe-reflector-cli-'));
    try {
      const file = join(dir, 'reflector.yaml');
      writeFileSync(file, `key: "${KEY_HEX}"\nlisten: { udp: ["127.0.0.1:0"], tcp: ["127.0.0.1:0"] }\nmetrics: { listen: "127.0.0.1:0" }\n`);
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../../src/cli.ts'), 'reflector', '--config', file], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const lines: string[] = [];
      const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
        createInterface({ input: child.stdout! }).on('line', (line) => {
          lines.push(line);
          const j = JSON.parse(line) as Record<string, unknown>;
          if (j.msg === 'reflector listening') resolve(j);
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}`)));
      });
      expect(first.udp).toEqual([expect.stringMatching(/^127\.0\.0\.1:\d+$/)]);
      expect(first.tcp).toEqual([expect.stringMatching(/^127\.0\.0\.1:\d+$/)]);
      expect(first.metrics).toEqual(expect.stringMatching(/^127\.0\.0\.1:\d+$/));
      // The reflector answers as configured.
      const c = await udpClient();
      c.socket.send(packet(0), Number(String(first.udp as string[]).split(':')[1]), '127.0.0.1');
      await settle();
      c.socket.close();
      expect(c.got.length).toBe(1);
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number];
      expect(code).toBe(0);
      expect(lines.join('\n')).not.toContain(KEY_HEX);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a bad config with FILE:LINE:COL and exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'callprobe-reflector-cli-'));
    try {
      const file = join(dir, 'bad.yaml');
      writeFileSync(file, `key: "${KEY_HEX}"\nlisten: { udp: ["127.0.0.1:0"] }\nlimits: { packetsPerSecnd: 5 }\n`);
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../../src/cli.ts'), 'reflector', '--config', file], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const [code] = (await once(child, 'exit')) as [number];
      expect(code).toBe(2);
      expect(stderr.trim()).toBe(`${file}:3:11: limits.packetsPerSecnd: unknown key (not allowed here)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
