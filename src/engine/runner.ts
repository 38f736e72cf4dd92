import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { ProbeFailure, classify, type FailureCode } from '../failure.js';
import type { Logger } from '../log.js';
import { formatEndpoint } from '../net/address.js';
import type { PhaseContext, PhaseRegistry, RunState } from '../phases/types.js';
import type { PhaseSettings } from '../types.js';
import type { PlannedPhase, ProbeSpec } from '../types.js';
import { RESULT_SCHEMA, type PhaseResult, type ProbeResult, type RunRecord } from '../result.js';
import { VERSION } from '../version.js';
import type { DestinationGuard } from '../types.js';

export interface RunnerDeps {
  /** The phases the spec names, by name. */
  phases: PhaseRegistry;
  guard: DestinationGuard;
  settings: PhaseSettings;
  vantage: ProbeResult['vantage'];
  log: Logger;
}

/**
 * Runs a spec's phases in order, each with its own timeout and AbortSignal; a phase's output feeds
 * the next through `RunState`. The first failure ends the run and later phases are recorded as
 * `skipped`, so the planned path stays visible. `signal` cancels the whole run (deadline, shutdown):
 * the phase then running fails with `interrupted`.
 */
export async function runSpec(spec: ProbeSpec, deps: RunnerDeps, signal: AbortSignal): Promise<RunRecord> {
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const state: RunState = { cleanups: [] };
  if (isIP(spec.endpoint.host) !== 0) state.addresses = [spec.endpoint.host];
  const phases: PhaseResult[] = [];
  let failure: FailureCode | null = null;
  let failedPhase: string | null = null;
  try {
    for (const planned of spec.phases) {
      if (failure !== null) {
        phases.push(skippedPhase(planned, spec));
        continue;
      }
      const result = await runPhase(spec, planned, deps, state, signal, t0);
      phases.push(result);
      if (!result.ok) {
        failure = result.failure;
        failedPhase = result.phase;
      }
    }
  } finally {
    for (const cleanup of state.cleanups.reverse()) {
      try {
        cleanup();
      } catch (err) {
        deps.log.warn({ err, probe: spec.id }, 'cleanup failed');
      }
    }
  }
  return {
    schema: RESULT_SCHEMA,
    id: randomUUID(),
    software: { name: 'callprobe', version: VERSION },
    vantage: deps.vantage,
    service: spec.service,
    target: spec.target,
    startedAt,
    durationMs: round(performance.now() - t0),
    phases,
    failure,
    failedPhase,
  };
}

async function runPhase(
  spec: ProbeSpec,
  planned: PlannedPhase,
  deps: RunnerDeps,
  state: RunState,
  runSignal: AbortSignal,
  t0: number,
): Promise<PhaseResult> {
  const definition = deps.phases.get(planned.name);
  const controller = new AbortController();
  const onRunAbort = (): void => controller.abort(interruptedBy(runSignal.reason));
  if (runSignal.aborted) onRunAbort();
  else runSignal.addEventListener('abort', onRunAbort, { once: true });
  const timer = setTimeout(
    () =>
      controller.abort(
        new ProbeFailure('generic_timeout_error', `${planned.name}: no answer within ${planned.timeoutMs} ms`, {
          timeoutMs: planned.timeoutMs,
        }),
      ),
    planned.timeoutMs,
  );
  const ctx: PhaseContext = {
    service: spec.service,
    target: spec.target,
    endpoint: spec.endpoint,
    params: planned.params,
    signal: controller.signal,
    timeoutMs: planned.timeoutMs,
    guard: deps.guard,
    settings: deps.settings,
    state,
    log: deps.log.child({ probe: spec.id, phase: planned.name }),
    evidence: {},
    endpointUsed: defaultEndpoint(spec),
  };
  const started = performance.now();
  let ended = started;
  let failure: FailureCode | null = null;
  let running: Promise<void> | undefined;
  try {
    if (!definition) throw new ProbeFailure('internal_error', `unknown phase ${planned.name}`);
    running = definition.run(ctx);
    await Promise.race([running, rejectOnAbort(controller.signal)]);
    ended = performance.now();
  } catch (err) {
    ended = performance.now();
    const c = classifyPhaseError(err, ctx, deps, spec);
    failure = c;
  } finally {
    clearTimeout(timer);
    runSignal.removeEventListener('abort', onRunAbort);
    // Whatever the phase was doing in the background is over now.
    if (!controller.signal.aborted) controller.abort(new ProbeFailure('interrupted', 'phase finished'));
  }
  // A phase told to stop may still owe the server a goodbye (TURN's Refresh with lifetime 0):
  // give it a bounded moment before the run's cleanups close the sockets under it.
  if (failure !== null && running) await settleWithin(running, PHASE_SETTLE_MS);
  return {
    phase: planned.name,
    endpoint: ctx.endpointUsed,
    ...(ctx.transport ? { transport: ctx.transport } : {}),
    startedAt: round(started - t0),
    durationMs: round(ended - started),
    ok: failure === null,
    failure,
    // A snapshot: a phase still finishing in the background cannot change a returned result.
    evidence: { ...ctx.evidence },
  };
}

/** How long a cancelled phase may take to release what it holds (TURN's default releaseWaitMs is 2 s). */
const PHASE_SETTLE_MS = 3000;

function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    promise.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      () => {
        clearTimeout(timer);
        resolve();
      },
    );
  });
}

function classifyPhaseError(err: unknown, ctx: PhaseContext, deps: RunnerDeps, spec: ProbeSpec): FailureCode {
  // A programming error (or a codec that let hostile bytes through) is our bug, not the network's.
  // The ws library reports a peer's invalid frames as RangeErrors with a WS_ERR_ code: those are the peer's.
  const peerFrameError = typeof (err as { code?: unknown })?.code === 'string' && (err as { code: string }).code.startsWith('WS_ERR_');
  if (!peerFrameError && (err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError)) {
    deps.log.error({ err, probe: spec.id, phase: ctx.endpointUsed }, 'internal error in phase');
    ctx.evidence.error = `${err.name}: ${err.message}`;
    return 'internal_error';
  }
  const c = classify(err);
  ctx.evidence.error = c.error;
  // What the failure itself carries (a raw TLS code, a denied address) is more precise.
  Object.assign(ctx.evidence, c.evidence);
  if (c.code === 'unknown_failure') deps.log.warn({ err, probe: spec.id }, 'unmapped failure: add it to failure.ts');
  return c.code;
}

function interruptedBy(reason: unknown): ProbeFailure {
  if (reason instanceof ProbeFailure) return reason;
  return new ProbeFailure('interrupted', typeof reason === 'string' ? reason : 'run cancelled');
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

function skippedPhase(planned: PlannedPhase, spec: ProbeSpec): PhaseResult {
  return {
    phase: planned.name,
    endpoint: defaultEndpoint(spec),
    startedAt: 0,
    durationMs: 0,
    ok: false,
    failure: null,
    skipped: true,
    evidence: {},
  };
}

function defaultEndpoint(spec: ProbeSpec): string {
  return spec.endpoint.url ?? formatEndpoint(spec.endpoint.host, spec.endpoint.port);
}

/** Milliseconds with microsecond precision. */
function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
