import { randomUUID } from 'node:crypto';
import type { PhaseResult, ProbeResult } from '../../src/result.js';

/** A well-formed ProbeResult for sink tests, with the fields a test cares about overridden. */
export function result(over: Partial<ProbeResult> = {}, phases?: PhaseResult[]): ProbeResult {
  return {
    schema: 2,
    id: randomUUID(),
    software: { name: 'callprobe', version: '0.0.0-test' },
    vantage: { name: 'lab' },
    service: 'telegram',
    target: 'dc2',
    path: 'messaging',
    location: 'foreign',
    startedAt: '2026-11-22T10:00:00.000Z',
    durationMs: 12.5,
    phases: phases ?? [
      { phase: 'tcp', endpoint: '198.18.2.2:443', transport: 'tcp', startedAt: 0.01, durationMs: 2.5, ok: true, failure: null, evidence: {} },
    ],
    verdict: 'ok',
    failure: null,
    failedPhase: null,
    control: null,
    scope: null,
    ...over,
  };
}
