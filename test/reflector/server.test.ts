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
import { silentLogger } from '../../src/log.js';
import { MEDIA_SHAPES, cryptoRng, encodeMediaPacket } from '../../src/protocol/media-packet.js';
import { reflectorConfigSchema } from '../../src/reflector/config.js';
import { STREAM_PROOF_LENGTH, encodeFrame, encodeStreamRequest } from '../../src/reflector/protocol.js';
import { startReflector, type Reflector } from '../../src/reflector/server.js';
import { createLabCa, type LabCa } from '../lab/ca.js';

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

  it('echoes an authentic packet of every shape byte for byte, and nothing else', async () => {
    const c = await udpClient();
    const sent = MEDIA_SHAPES.map((shape, i) => packet(i, { shape }));
    for (const p of sent) c.socket.send(p, r.udp[0]!.port, '127.0.0.1');
    c.socket.send(packet(9, { key: OTHER_KEY }), r.udp[0]!.port, '127.0.0.1');
    const tampered = packet(10);
    tampered[20]! ^= 0xff;
    c.socket.send(tampered, r.udp[0]!.port, '127.0.0.1');
    c.socket.send(Buffer.from('hello'), r.udp[0]!.port, '127.0.0.1');
    await settle();
    c.socket.close();
    expect(c.got.map((g) => g.toString('hex')).sort()).toEqual(sent.map((s) => s.toString('hex')).sort());
    const text = await metricsText(r);
    expect(text).toContain('callprobe_reflector_packets_total{transport="udp",result="echoed"} 5');
    expect(text).toContain('callprobe_reflector_packets_total{transport="udp",result="bad_tag"} 3');
    const inBytes = sent.reduce((n, p) => n + p.length, 0) + packet(0).length * 2 + 5;
    expect(text).toContain(`callprobe_reflector_bytes_total{transport="udp",direction="in"} ${inBytes}`);
    expect(text).toContain(`callprobe_reflector_bytes_total{transport="udp",direction="out"} ${sent.reduce((n, p) => n + p.length, 0)}`);
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
      expect(await metricsText(r)).toContain('callprobe_reflector_refused_connections_total 1');
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

  it('closes (FIN, nothing sent) on a request above streamMaxBytes or beyond streamsPerMinute', async () => {
    const big = await tcpTo(r.tcp[0]!.port);
    big.write(encodeFrame(encodeStreamRequest(1024 * 1024 + 1, KEY).bytes));
    expect(await collect(big)).toEqual({ bytes: Buffer.alloc(0), ended: true });
    big.destroy();
    // streamsPerMinute 2: the two tests above used both.
    const again = await tcpTo(r.tcp[0]!.port);
    again.write(encodeFrame(encodeStreamRequest(10, KEY).bytes));
    expect(await collect(again)).toEqual({ bytes: Buffer.alloc(0), ended: true });
    again.destroy();
    const text = await metricsText(r);
    expect(text).toContain('callprobe_reflector_stream_requests_total{transport="tcp",result="served"} 1');
    expect(text).toContain('callprobe_reflector_stream_requests_total{transport="tls",result="served"} 1');
    expect(text).toContain('callprobe_reflector_stream_requests_total{transport="tcp",result="too_large"} 1');
    expect(text).toContain('callprobe_reflector_stream_requests_total{transport="tcp",result="rate_limited"} 1');
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
