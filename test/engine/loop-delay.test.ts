import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { LoopDelayMonitor, UNRELIABLE_LOOP_DELAY_MS, sharedLoopMonitor } from '../../src/engine/loop-delay.js';
import { PHASES, phaseRegistry } from '../../src/phases/index.js';
import type { PhaseDefinition } from '../../src/phases/types.js';
import { runOnce, specFor } from '../helpers/spec.js';

/** Blocks the event loop as a synchronous 32 MiB read once did: nothing else runs meanwhile. */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('event-loop delay monitor', () => {
  let monitor: LoopDelayMonitor | undefined;
  afterEach(() => monitor?.stop());

  it('attributes a stall to the spans that overlap it, and only to those', async () => {
    monitor = new LoopDelayMonitor().start();
    await tick(250); // some windows of an idle loop first
    const before = performance.now();
    await tick(20);
    const beforeEnd = performance.now();
    await tick(150); // the spans are apart by more than a window
    const stallStart = performance.now();
    stall(300);
    await tick(250); // the stall is rolled into its window
    const during = monitor.worstBetween(stallStart, performance.now());
    expect(during).toBeGreaterThanOrEqual(250);
    expect(monitor.worstBetween(before, beforeEnd)).toBeLessThan(during);
  });

  it('flags a run whose loop stalled past the threshold as unreliable, and exports the figure', async () => {
    const stalling: PhaseDefinition = {
      name: 'test-stall',
      params: z.object({}).strict(),
      controlPhase: 'tcp',
      needs: 'nothing',
      async run() {
        stall(2 * UNRELIABLE_LOOP_DELAY_MS + 100);
        await tick(150);
      },
    };
    const registry = phaseRegistry([...PHASES.values(), stalling]);
    // As the engine does at start: the monitor must be sampling before a stall to see it.
    sharedLoopMonitor();
    await tick(50);
    const run = await runOnce(specFor({ endpoint: { host: '127.0.0.1', port: 9 }, phases: ['test-stall'], registry }), { registry });
    expect(run.failure).toBeNull();
    expect(run.timing?.reliable).toBe(false);
    expect(run.timing!.eventLoopDelayMaxMs).toBeGreaterThanOrEqual(2 * UNRELIABLE_LOOP_DELAY_MS);
  });
});
