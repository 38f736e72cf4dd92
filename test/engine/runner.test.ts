import { z } from 'zod';
import { describe, expect, it, vi } from 'vitest';
import { ProbeFailure } from '../../src/failure.js';
import { PHASES, phaseRegistry } from '../../src/phases/index.js';
import type { PhaseDefinition } from '../../src/phases/types.js';
import { runOnce as runWith, specFor as specWith } from '../helpers/spec.js';

/** Test-only phases, registered for this file and removed after it. */
const order: string[] = [];

const testPhases: PhaseDefinition[] = [
  {
    name: 'test-release',
    params: z.object({}).strict(),
    controlPhase: 'tcp',
    needs: 'nothing',
    run(ctx) {
      ctx.atRunEnd(() => order.push('cleanup'));
      ctx.evidence.released = false;
      return new Promise((_, reject) => {
        ctx.signal.addEventListener('abort', () =>
          // Like TURN's Refresh with lifetime 0: a goodbye that takes a round trip after the abort.
          setTimeout(() => {
            order.push('released');
            ctx.evidence.released = true;
            reject(ctx.signal.reason);
          }, 200),
        );
      });
    },
  },
  {
    name: 'test-bug',
    params: z.object({}).strict(),
    controlPhase: 'tcp',
    needs: 'nothing',
    async run(ctx) {
      ctx.evidence.bytesSent = 3;
      (undefined as unknown as { x: number }).x;
    },
  },
  {
    name: 'test-hang',
    params: z.object({}).strict(),
    controlPhase: 'tcp',
    needs: 'nothing',
    run(ctx) {
      ctx.evidence.bytesSent = 7;
      return new Promise(() => {}); // ignores its signal on purpose: the runner must not wait for it
    },
  },
  {
    name: 'test-partial',
    params: z.object({}).strict(),
    controlPhase: 'tcp',
    needs: 'nothing',
    run(ctx) {
      // Part of an answer, then silence: a censor that lets the first segment through.
      ctx.trace.counter().received(Buffer.from('0123456789'));
      return new Promise(() => {});
    },
  },
  {
    name: 'test-mismatch',
    params: z.object({}).strict(),
    controlPhase: 'tcp',
    needs: 'nothing',
    async run() {
      throw new ProbeFailure('proto_mismatch', 'nonce not echoed', { expected: 'aa', got: 'bb' });
    },
  },
];

/**
 * Runs `body` on a faked clock (timers and performance.now), so durations are exact instead of
 * within a window of a shared machine's scheduling noise.
 */
async function onFakeClock(body: (advance: (ms: number) => Promise<void>) => Promise<void>): Promise<void> {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  try {
    await body(async (ms) => void (await vi.advanceTimersByTimeAsync(ms)));
  } finally {
    vi.useRealTimers();
  }
}

/** The shipped phases and this file's own: passed in, so nothing global changes. */
const registry = phaseRegistry([...PHASES.values(), ...testPhases]);
const specFor = (opts: Parameters<typeof specWith>[0]) => specWith({ ...opts, registry });
const runOnce = (spec: Parameters<typeof runWith>[0], opts: Parameters<typeof runWith>[1] = {}) => runWith(spec, { ...opts, registry });

describe('runner', () => {
  const endpoint = { host: '127.0.0.1', port: 9 };

  it('turns a programming error into internal_error and keeps the partial evidence', async () => {
    const run = await runOnce(specFor({ endpoint, phases: ['test-bug', 'test-mismatch'] }));
    expect(run.failure).toBe('internal_error');
    expect(run.failedPhase).toBe('test-bug');
    expect(run.phases[0]!.evidence.bytesSent).toBe(3);
    expect(String(run.phases[0]!.evidence.error)).toMatch(/^TypeError: /);
    expect(run.phases[1]).toEqual({ phase: 'test-mismatch', endpoint: '127.0.0.1:9', startedAt: 0, durationMs: 0, ok: false, failure: null, skipped: true, evidence: {} });
  });

  it('times a phase out at its own timeout even if the phase ignores its signal', async () => {
    await onFakeClock(async (advance) => {
      const spec = specFor({ endpoint, phases: ['test-hang'], timeoutMs: 150 });
      const running = runOnce(spec);
      await advance(150); // the timeout
      await advance(3000); // the bounded wait for a phase that ignores its signal
      const run = await running;
      expect(run.failure).toBe('generic_timeout_error');
      expect(run.phases[0]!.evidence).toMatchObject({ bytesSent: 7, timeoutMs: 150 });
      expect(run.phases[0]!.durationMs).toBe(150);
    });
  });

  it('says a timeout came after a partial answer, with its byte count', async () => {
    await onFakeClock(async (advance) => {
      const running = runOnce(specFor({ endpoint, phases: ['test-partial', 'test-hang'], timeoutMs: 150 }));
      await advance(150);
      await advance(3000);
      const run = await running;
      expect(run).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'test-partial' });
      expect(run.phases[0]!.evidence).toMatchObject({ error: 'test-partial: partial answer: 10 bytes, then nothing within 150 ms', bytesReceived: 10, timeoutMs: 150 });
    });
  });

  it('marks the running phase interrupted when the whole run is cancelled', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new ProbeFailure('interrupted', 'shutting down')), 50);
    const run = await runOnce(specFor({ endpoint, phases: ['test-hang', 'test-mismatch'], timeoutMs: 5000 }), { signal: controller.signal });
    expect(run.failure).toBe('interrupted');
    expect(run.phases[0]!.evidence.error).toBe('shutting down');
    expect(run.phases[1]!.skipped).toBe(true);
  });

  it('lets a timed-out phase finish its release before the run closes its connection', async () => {
    await onFakeClock(async (advance) => {
      order.length = 0;
      const running = runOnce(specFor({ endpoint, phases: ['test-release'], timeoutMs: 100 }));
      await advance(100); // the timeout
      await advance(200); // the release's round trip
      const run = await running;
      expect(run.failure).toBe('generic_timeout_error');
      expect(order).toEqual(['released', 'cleanup']);
      expect(run.phases[0]!.evidence.released).toBe(true);
      // Timed to the failure (100 ms), not to the end of the release (300 ms).
      expect(run.phases[0]!.durationMs).toBe(100);
    });
  });

  it('keeps a ProbeFailure code and its evidence', async () => {
    const run = await runOnce(specFor({ endpoint, phases: ['test-mismatch'] }));
    expect(run.failure).toBe('proto_mismatch');
    expect(run.phases[0]!.evidence).toEqual({ error: 'nonce not echoed', expected: 'aa', got: 'bb' });
  });

  it('fills the result envelope', async () => {
    const run = await runOnce(specFor({ endpoint, phases: ['test-mismatch'], service: 'telegram', target: 'dc2' }));
    expect(run).toMatchObject({ schema: 2, software: { name: 'callprobe' }, vantage: { name: 'test' }, service: 'telegram', target: 'dc2' });
    expect(run.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(run.startedAt)).toBeGreaterThan(0);
  });
});
