import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { streamPhase } from '../../src/phases/stream.js';
import { RESULT_SCHEMA } from '../../src/result.js';
import { Metrics } from '../../src/sinks/metrics.js';
import { reflectorConfigSchema } from '../../src/reflector/config.js';
import { FrameReader, STREAM_PROOF_LENGTH, verifyStreamRequest } from '../../src/protocol/reflector.js';
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
      evidence: { requestedBytes: 262144, streamBytes: 262144, bytesReceived: 262144 + 16, bytesSent: 2 + 48, proofVerified: true, stallMs: 4000 },
    });
    expect(run.phases[1]!.evidence.throughputBps).toBeGreaterThan(0);
  });

  it('over TLS (the connection the tls phase opened)', async () => {
    const run = await runOnce(streamSpec(reflector.tls[0]!.port, { bytes: '64KiB' }, ['tcp', 'tls']), { settings: { mediaKey: KEY, extraCa: [ca.caCertPem] } });
    expect(run.failure).toBeNull();
    expect(run.phases[2]).toMatchObject({ phase: 'stream', transport: 'tls', evidence: { streamBytes: 65536, proofVerified: true } });
  });

  it('data stops with the connection open: stream_cutoff at the exact offset', async () => {
    const fake = await fakeReflector({ send: 16384, then: 'stall' });
    try {
      const run = await runOnce(streamSpec(fake.port, { stallMs: 400 }), withKey);
      expect(run).toMatchObject({ failure: 'stream_cutoff', failedPhase: 'stream' });
      const ev = run.phases[1]!.evidence;
      expect(ev).toMatchObject({ cutoffAtBytes: 16384, bytesReceived: 16384, streamBytes: 16384 - 16, proofVerified: true, stallMs: 400 });
      expect(ev.cutoffAtMs).toBe(ev.lastDataMs);
      expect(ev.error).toMatch(/^the stream stopped after 16384 of 262160 bytes \([\d.]+ ms after the request\); nothing for 400 ms, no FIN, no RST$/);
      const m = new Metrics('lab');
      m.observe({ ...run, schema: RESULT_SCHEMA, verdict: 'degraded', control: null, scope: null });
      expect(await m.registry.metrics()).toContain('callprobe_stream_cutoff_bytes{service="test",target="t",shape="tcp"} 16384');
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

  it('needs the reflector key, and validates its parameters (bytes: at most the reflector default, 4 MiB)', async () => {
    const run = await runOnce(streamSpec(reflector.tcp[0]!.port));
    expect(run).toMatchObject({ failure: 'internal_error', failedPhase: 'stream' });
    expect(streamPhase.params.parse({ bytes: '16KiB' })).toEqual({ bytes: 16384, stallMs: 4000 });
    expect(streamPhase.params.parse({ bytes: '4MiB' })).toEqual({ bytes: 4 * 1024 * 1024, stallMs: 4000 });
    const over = streamPhase.params.safeParse({ bytes: 4 * 1024 * 1024 + 1 });
    expect(over.success ? [] : over.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'bytes: bytes must be 1 B to 4 MiB (the most a reflector serves by default: its streamMaxBytes)',
    ]);
    expect(streamPhase.params.safeParse({ bytes: 0 }).success).toBe(false);
    expect(streamPhase.params.safeParse({ stallMs: 10 }).success).toBe(false);
  });
});
