import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { streamPhase } from '../../src/phases/stream/index.js';
import { RESULT_SCHEMA } from '../../src/result.js';
import { Metrics } from '../../src/sinks/metrics.js';
import { reflectorConfigSchema } from '../../src/reflector/config.js';
import { FrameReader, STREAM_PROOF_LENGTH, verifyStreamRequest } from '../../src/protocol/reflector.js';
import { ACK_RECORD_LENGTH, RecordWriter } from '../../src/protocol/stream-records.js';
import { startReflector, type Reflector } from '../../src/reflector/server.js';
import { createLabCa, type LabCa } from '../lab/ca.js';
import { listenTracked, type Running } from '../helpers/servers.js';
import { runOnce, specFor } from '../helpers/spec.js';

const KEY_HEX = '3e'.repeat(32);
const KEY = Buffer.from(KEY_HEX, 'hex');
const withKey = { settings: { mediaKey: KEY } };

type Behaviour = { send: number; then: 'stall' | 'fin' | 'rst' | 'rst-at-once' } | { wrongProof: true } | { silent: true };

/**
 * A misbehaving reflector: it reads the authenticated request like the real one, then sends
 * `send` bytes (the proof included) and stalls, closes (FIN) or resets (RST), 50 ms later or right
 * behind the data (which Node reports as an end of stream: src/net/stream-end.ts).
 */
async function fakeReflector(b: Behaviour): Promise<Running> {
  const server: Server = createServer((s) => {
    s.on('error', () => {});
    const reader = new FrameReader();
    s.on('data', (chunk: Buffer) => {
      for (const frame of reader.push(chunk)) {
        const req = verifyStreamRequest(frame, KEY);
        if (!req || 'silent' in b) continue;
        if ('wrongProof' in b) {
          s.write(Buffer.alloc(STREAM_PROOF_LENGTH + 100, 0xee));
          continue;
        }
        s.write(Buffer.concat([req.proof, Buffer.alloc(b.send - STREAM_PROOF_LENGTH, 0x33)]), () => {
          if (b.then === 'fin') s.end();
          else if (b.then === 'rst') setTimeout(() => s.resetAndDestroy(), 50);
          else if (b.then === 'rst-at-once') s.resetAndDestroy();
        });
      }
    });
  });
  return listenTracked(server);
}

/**
 * A reflector whose upload path misbehaves, built on the real record codec: after the proof it
 * acknowledges the upload at each `ackEvery` bytes until `ackUntil`, then goes silent on acks;
 * with `data`, it sends that many download bytes in records, `dataEveryMs` apart (default at once).
 */
async function fakeUploadReflector(b: {
  ackEvery: number;
  ackUntil: number;
  data?: number;
  dataRecord?: number;
  dataEveryMs?: number;
  /** Right after the proof: bytes that are no record, or an ack of bytes not yet sent. */
  hostile?: 'garbage' | 'early-ack';
}): Promise<Running> {
  const server: Server = createServer((s) => {
    s.on('error', () => {});
    const reader = new FrameReader();
    let received = 0;
    let acked = 0;
    let writer: RecordWriter | null = null;
    const onUpload = (n: number): void => {
      received += n;
      while (writer && acked + b.ackEvery <= Math.min(received, b.ackUntil)) s.write(writer.ack((acked += b.ackEvery)));
    };
    s.on('data', (chunk: Buffer) => {
      if (writer) return onUpload(chunk.length);
      const rest = reader.take(chunk, (frame) => {
        const req = verifyStreamRequest(frame, KEY);
        if (!req) return true;
        const w = (writer = new RecordWriter(KEY, req.tag));
        s.write(req.proof);
        if (b.hostile === 'garbage') s.write(Buffer.alloc(40, 0xab));
        if (b.hostile === 'early-ack') s.write(w.ack(req.bytesRequested));
        let left = b.data ?? 0;
        const piece = b.dataRecord ?? left;
        const next = (): void => {
          if (left <= 0 || s.destroyed) return;
          const n = Math.min(piece, left);
          left -= n;
          s.write(w.data(n));
          if (b.dataEveryMs) setTimeout(next, b.dataEveryMs);
          else next();
        };
        next();
        return false;
      });
      if (rest) onUpload(rest.length);
    });
  });
  return listenTracked(server);
}

const streamSpec = (port: number, params: Record<string, unknown> = {}, phases: unknown[] = ['tcp']) =>
  specFor({ endpoint: { host: '127.0.0.1', port, sni: 'reflector.lab.test' }, phases: [...(phases as string[]), { stream: params }], timeoutMs: 3000 });

describe('stream phase on loopback', () => {
  let reflector: Reflector;
  let dir: string;
  let ca: LabCa;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-stream-'));
    ca = await createLabCa(join(dir, 'ca'));
    const cert = await ca.issue(['reflector.lab.test'], { ips: ['127.0.0.1'] });
    reflector = await startReflector(
      reflectorConfigSchema.parse({
        key: KEY_HEX,
        listen: { tcp: ['127.0.0.1:0'], tls: [{ listen: '127.0.0.1:0', cert: cert.certPath, key: cert.keyPath }] },
        metrics: { listen: '' },
      }),
      silentLogger(),
    );
  }, 60_000);
  afterAll(async () => {
    await reflector.close();
    await ca.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('receives all 256 KiB from the reflector over TCP, proof verified', async () => {
    const run = await runOnce(streamSpec(reflector.tcp[0]!.port), withKey);
    expect(run.failure).toBeNull();
    expect(run.phases[1]).toMatchObject({
      phase: 'stream',
      transport: 'tcp',
      ok: true,
      evidence: {
        direction: 'download',
        requestedBytes: 262144,
        streamBytes: 262144,
        bytesReceived: 262144 + 16,
        bytesSent: 2 + 48,
        tcp: { readBytes: 262144 + 16, writtenBytes: 2 + 48 },
        proofVerified: true,
        stallMs: 4000,
      },
    });
    const ev = run.phases[1]!.evidence;
    expect(ev.throughputBps).toBeGreaterThan(0);
    expect(ev.upload).toBeUndefined();
    // One origin, the phase's start: the first byte comes before the last.
    expect(ev.timeToFirstByteMs as number).toBeGreaterThan(0);
    expect(ev.lastDataMs as number).toBeGreaterThanOrEqual(ev.timeToFirstByteMs as number);
    expect(ev.lastDataMs as number).toBeLessThanOrEqual(run.phases[1]!.durationMs);
  });

  it('over TLS (the connection the tls phase opened)', async () => {
    const run = await runOnce(streamSpec(reflector.tls[0]!.port, { bytes: '64KiB' }, ['tcp', 'tls']), { settings: { mediaKey: KEY, extraCa: [ca.caCertPem] } });
    expect(run.failure).toBeNull();
    expect(run.phases[2]).toMatchObject({ phase: 'stream', transport: 'tls', evidence: { streamBytes: 65536, proofVerified: true, bytesReceived: 65536 + 16 } });
    // On the TCP socket: TLS records (and the handshake before the phase), more than the decrypted bytes.
    const tcp = run.phases[2]!.evidence.tcp as { readBytes: number; writtenBytes: number };
    expect(tcp.readBytes).toBeGreaterThan(65536 + 16 + run.phases[1]!.evidence.bytesReceived!);
    expect(tcp.writtenBytes).toBeGreaterThan(2 + 48 + run.phases[1]!.evidence.bytesSent!);
  });

  it('uploads N bytes in paced writes, each acknowledged by the reflector', async () => {
    const run = await runOnce(streamSpec(reflector.tcp[0]!.port, { direction: 'upload', bytes: '20KiB', writeIntervalMs: 1, stallMs: 1000 }), withKey);
    expect(run.failure).toBeNull();
    const ev = run.phases[1]!.evidence;
    expect(ev).toMatchObject({
      direction: 'upload',
      proofVerified: true,
      upload: { writeBytes: 1024, writeIntervalMs: 1, writes: 20, writtenBytes: 20480, ackedBytes: 20480 },
      stallMs: 1000,
      bytesSent: 2 + 48 + 20480,
    });
    const up = ev.upload as { acks: number; lastAckMs: number; pacing: { sends: number }; throughputBps: number };
    expect(up.pacing.sends).toBe(20);
    expect(up.throughputBps).toBeGreaterThan(0);
    expect(up.lastAckMs).toBeLessThanOrEqual(run.phases[1]!.durationMs);
    // Each ack is 15 bytes after the 16-byte proof: nothing else came back.
    expect(ev.tcp).toEqual({ readBytes: 16 + up.acks * ACK_RECORD_LENGTH, writtenBytes: 2 + 48 + 20480 });
    expect(ev.streamBytes).toBeUndefined();
  });

  it('both ways at once, over TLS', async () => {
    const run = await runOnce(streamSpec(reflector.tls[0]!.port, { direction: 'both', bytes: '64KiB', writeIntervalMs: 1, stallMs: 1000 }, ['tcp', 'tls']), {
      settings: { mediaKey: KEY, extraCa: [ca.caCertPem] },
    });
    expect(run.failure).toBeNull();
    expect(run.phases[2]!.evidence).toMatchObject({ direction: 'both', streamBytes: 65536, upload: { writes: 64, writtenBytes: 65536, ackedBytes: 65536 } });
  });

  it('data stops with the connection open: stream_cutoff at the exact offset', async () => {
    const fake = await fakeReflector({ send: 16384, then: 'stall' });
    try {
      const run = await runOnce(streamSpec(fake.port, { stallMs: 400 }), withKey);
      expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream' });
      const ev = run.phases[1]!.evidence;
      expect(ev).toMatchObject({
        cutoffAtBytes: 16384,
        bytesReceived: 16384,
        streamBytes: 16384 - 16,
        proofVerified: true,
        stallMs: 400,
        cutoff: { direction: 'download', down: { tcpPayloadBytes: 16384, streamBytes: 16384 - 16, lastAtMs: ev.lastDataMs } },
      });
      expect(ev.cutoffAtMs).toBe(ev.lastDataMs);
      expect(ev.lastDataMs as number).toBeGreaterThanOrEqual(ev.timeToFirstByteMs as number);
      expect(ev.error).toBe(
        `data from the reflector stopped after 16384 bytes of TCP payload (16368 of 262144 stream bytes), the last at ${ev.lastDataMs} ms; nothing for 400 ms, no FIN, no RST`,
      );
      const m = new Metrics('lab');
      m.observe({ ...run, schema: RESULT_SCHEMA, verdict: 'degraded', control: null, scope: null });
      expect(await m.registry.metrics()).toContain('callprobe_stream_cutoff_bytes{service="test",target="t",shape="tcp"} 16384');
    } finally {
      await fake.close();
    }
  });

  it('upload acknowledged up to 4 KiB, then no more acks: stream_cutoff upload, at the flow offset the acks vouch for', async () => {
    const fake = await fakeUploadReflector({ ackEvery: 1024, ackUntil: 4096 });
    try {
      const run = await runOnce(streamSpec(fake.port, { direction: 'upload', bytes: '16KiB', writeIntervalMs: 1, stallMs: 400 }), withKey);
      expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream' });
      const ev = run.phases[1]!.evidence;
      const lastAckMs = (ev.upload as { lastAckMs: number }).lastAckMs;
      expect(ev).toMatchObject({
        upload: { writes: 16, writtenBytes: 16384, ackedBytes: 4096, acks: 4 },
        cutoff: {
          direction: 'upload',
          up: { writes: 16, writtenBytes: 16384, tcpPayloadBytes: 50 + 16384, ackedBytes: 4096, ackedTcpPayloadBytes: 50 + 4096, ackedWrites: 4, lastAckMs },
        },
        cutoffAtBytes: 50 + 4096,
        cutoffAtMs: lastAckMs,
      });
      expect((ev.cutoff as Record<string, unknown>).down).toBeUndefined();
      expect(ev.error).toBe(
        'the reflector acknowledged 4096 of 16384 upload bytes (the flow\'s first 4146 bytes of TCP payload), 16384 written; nothing for 400 ms, no FIN, no RST',
      );
    } finally {
      await fake.close();
    }
  });

  it('both: data and acks stop together: stream_cutoff both, each way as far as it got', async () => {
    const fake = await fakeUploadReflector({ ackEvery: 1024, ackUntil: 2048, data: 5000 });
    try {
      const run = await runOnce(streamSpec(fake.port, { direction: 'both', bytes: '16KiB', writeIntervalMs: 1, stallMs: 400 }), withKey);
      expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream' });
      const ev = run.phases[1]!.evidence;
      // The proof, one data record (3 + 5000) and two acks: everything that came.
      const down = 16 + 3 + 5000 + 2 * ACK_RECORD_LENGTH;
      expect(ev).toMatchObject({
        streamBytes: 5000,
        cutoff: { direction: 'both', down: { tcpPayloadBytes: down, streamBytes: 5000 }, up: { ackedBytes: 2048, ackedTcpPayloadBytes: 50 + 2048, ackedWrites: 2 } },
        cutoffAtBytes: down,
      });
    } finally {
      await fake.close();
    }
  });

  it('both: acks stop while data goes on arriving: the upload is what stopped', async () => {
    const fake = await fakeUploadReflector({ ackEvery: 1024, ackUntil: 1024, data: 60_000, dataRecord: 1000, dataEveryMs: 20 });
    try {
      const run = await runOnce(streamSpec(fake.port, { direction: 'both', bytes: '60000', writeIntervalMs: 1, stallMs: 400 }), withKey);
      expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream' });
      const ev = run.phases[1]!.evidence;
      expect(ev).toMatchObject({ cutoff: { direction: 'upload', up: { ackedBytes: 1024 } }, cutoffAtBytes: 50 + 1024 });
      // Data kept coming the whole time: about one record per 20 ms for at least 400 ms.
      expect(ev.streamBytes as number).toBeGreaterThan(15_000);
      expect(ev.streamBytes as number).toBeLessThan(60_000);
    } finally {
      await fake.close();
    }
  });

  it.each([
    ['garbage', 'proto_malformed'],
    ['early-ack', 'proto_mismatch'],
  ] as const)('an upload answered with %s after the proof: %s, never a crash', async (hostile, code) => {
    const fake = await fakeUploadReflector({ ackEvery: 1024, ackUntil: 0, hostile });
    try {
      const run = await runOnce(streamSpec(fake.port, { direction: 'upload', bytes: '4KiB', writeIntervalMs: 50, stallMs: 1000 }), withKey);
      expect(run).toMatchObject({ failure: code, failedPhase: 'stream' });
      expect(run.phases[1]!.evidence.proofVerified).toBe(true);
    } finally {
      await fake.close();
    }
  });

  it('FIN before the end: eof_error, with how far it got', async () => {
    const fake = await fakeReflector({ send: 5000, then: 'fin' });
    try {
      const run = await runOnce(streamSpec(fake.port, { stallMs: 1000 }), withKey);
      expect(run).toMatchObject({ failure: 'eof_error', failedPhase: 'stream' });
      expect(run.phases[1]!.evidence).toMatchObject({ bytesReceived: 5000, streamBytes: 5000 - 16 });
    } finally {
      await fake.close();
    }
  });

  it('RST in the middle: connection_reset', async () => {
    const fake = await fakeReflector({ send: 3000, then: 'rst' });
    try {
      const run = await runOnce(streamSpec(fake.port, { stallMs: 1000 }), withKey);
      expect(run).toMatchObject({ failure: 'connection_reset', failedPhase: 'stream' });
      expect(run.phases[1]!.evidence).toMatchObject({ bytesReceived: 3000, error: 'ECONNRESET' });
    } finally {
      await fake.close();
    }
  });

  it('RST right behind the data, as a censor resets in place of the next segment: connection_reset, not eof_error', async () => {
    const fake = await fakeReflector({ send: 3000, then: 'rst-at-once' });
    try {
      const run = await runOnce(streamSpec(fake.port, { stallMs: 1000 }), withKey);
      expect(run).toMatchObject({ failure: 'connection_reset', failedPhase: 'stream' });
      expect(run.phases[1]!.evidence).toMatchObject({ bytesReceived: 3000, error: 'ECONNRESET', failedOperation: 'read' });
    } finally {
      await fake.close();
    }
  });

  it('something else answers: proto_mismatch (the proof is not the reflector’s)', async () => {
    const fake = await fakeReflector({ wrongProof: true });
    try {
      const run = await runOnce(streamSpec(fake.port, { stallMs: 1000 }), withKey);
      expect(run).toMatchObject({ failure: 'proto_mismatch', failedPhase: 'stream' });
      expect(run.phases[1]!.evidence).toMatchObject({ replyHeadHex: 'ee'.repeat(16), proofVerified: false });
    } finally {
      await fake.close();
    }
  });

  it('no byte at all: generic_timeout_error, not a cut-off', async () => {
    const fake = await fakeReflector({ silent: true });
    try {
      const run = await runOnce(streamSpec(fake.port, { stallMs: 300 }), withKey);
      expect(run).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'stream' });
      expect(run.phases[1]!.evidence).toMatchObject({ bytesReceived: 0, bytesSent: 50 });
      expect(run.phases[1]!.evidence.error).toBe('no byte of the stream came back within 300 ms of the request');
    } finally {
      await fake.close();
    }
  });

  it('the reflector refuses (too many bytes, too many streams): proto_error with the reason, not eof_error', async () => {
    const strict = await startReflector(
      reflectorConfigSchema.parse({ key: KEY_HEX, listen: { tcp: ['127.0.0.1:0'] }, metrics: { listen: '' }, limits: { streamMaxBytes: '64KiB', streamsPerMinute: 1 } }),
      silentLogger(),
    );
    try {
      const port = strict.tcp[0]!.port;
      const big = await runOnce(streamSpec(port, { bytes: '100KiB', stallMs: 1000 }), withKey);
      expect(big).toMatchObject({ failure: 'proto_error', failedPhase: 'stream' });
      expect(big.phases[1]!.evidence).toMatchObject({
        refusal: 'too_large',
        bytesReceived: 16,
        proofVerified: false,
        error: 'the reflector refused the stream request: more bytes than its streamMaxBytes',
      });
      expect((await runOnce(streamSpec(port, { bytes: '16KiB' }), withKey)).failure).toBeNull();
      const again = await runOnce(streamSpec(port, { bytes: '16KiB', stallMs: 1000 }), withKey);
      expect(again).toMatchObject({ failure: 'proto_error', failedPhase: 'stream' });
      expect(again.phases[1]!.evidence).toMatchObject({ refusal: 'rate_limited', bytesReceived: 16 });
    } finally {
      await strict.close();
    }
  });

  it('the plan refuses an upload its phase timeout cannot hold, or writes too small to earn acks within stallMs', () => {
    const planned = (timeoutMs: number) => ({ target: 't', endpoint: { host: '127.0.0.1', port: 1 }, timeoutMs, settings: { resolver: null, extraCa: [], userAgent: 'x', mediaKey: KEY }, before: ['tcp'] });
    const check = (p: Record<string, unknown>, timeoutMs = 10_000) => streamPhase.check!(streamPhase.params.parse(p), planned(timeoutMs));
    expect(check({ direction: 'upload' })).toBeNull();
    // 256 writes of 1 KiB, 2 ms apart: 510 ms of writes, and a 4 s stall after the last.
    expect(check({ direction: 'upload' }, 4510)).toBe(
      "phaseTimeout 4510 ms cannot hold the upload's writes (510 ms) and a stall after them (stallMs 4000): raise phaseTimeout or writeBytes, or lower bytes",
    );
    expect(check({ direction: 'upload' }, 4511)).toBeNull();
    expect(check({ direction: 'both', bytes: 64, writeBytes: 2, writeIntervalMs: 300, stallMs: 4000 }, 20_000)).toBe(
      'writes of 2 B every 300 ms fund an ack only every 4500 ms, not within stallMs 4000',
    );
    expect(check({ bytes: '4MiB' }, 1000)).toBeNull();
  });

  it('needs the reflector key, and validates its parameters (bytes: at most the reflector default, 4 MiB)', async () => {
    const run = await runOnce(streamSpec(reflector.tcp[0]!.port));
    expect(run).toMatchObject({ failure: 'internal_error', failedPhase: 'stream' });
    expect(streamPhase.params.parse({ bytes: '16KiB' })).toEqual({ direction: 'download', bytes: 16384, stallMs: 4000 });
    expect(streamPhase.params.parse({ bytes: '4MiB' })).toEqual({ direction: 'download', bytes: 4 * 1024 * 1024, stallMs: 4000 });
    expect(streamPhase.params.parse({ direction: 'both', writeBytes: 2, writeIntervalMs: 50 })).toEqual({
      direction: 'both',
      bytes: 262144,
      stallMs: 4000,
      writeBytes: 2,
      writeIntervalMs: 50,
    });
    const writesForDownload = streamPhase.params.safeParse({ writeBytes: 100 });
    expect(writesForDownload.success ? [] : writesForDownload.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'writeBytes: writeBytes is only for direction upload or both',
    ]);
    expect(streamPhase.params.safeParse({ direction: 'sideways' }).success).toBe(false);
    const over = streamPhase.params.safeParse({ bytes: 4 * 1024 * 1024 + 1 });
    expect(over.success ? [] : over.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'bytes: bytes must be 1 B to 4 MiB (the most a reflector serves by default: its streamMaxBytes)',
    ]);
    expect(streamPhase.params.safeParse({ bytes: 0 }).success).toBe(false);
    expect(streamPhase.params.safeParse({ stallMs: 10 }).success).toBe(false);
  });
});
