import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { roundMs } from '../evidence.js';
import { ProbeFailure, classify, isProgrammingError, type FailureCode } from '../failure.js';
import type { Logger } from '../log.js';
import { formatEndpoint } from '../net/address.js';
import type { Connection } from '../net/connection.js';
import { PhaseTrace, TRACE_CHANNELS } from '../net/trace.js';
import type { PhaseContext, PhaseDefinition, PhaseInput, PhaseOutput, PhaseRegistry } from '../phases/types.js';
import { plannedContext } from '../plan/specs.js';
import { RESULT_SCHEMA, type Evidence, type PhaseResult, type ProbeResult, type RunRecord } from '../result.js';
import { VERSION } from '../version.js';
import type { DestinationGuard, PhaseSettings, PlannedPhase, ProbeSpec } from '../types.js';
import { UNRELIABLE_LOOP_DELAY_MS, sharedLoopMonitor, type LoopDelayMonitor } from './loop-delay.js';

export interface RunnerDeps {
  /** The phases the spec names, by name. */
  phases: PhaseRegistry;
  guard: DestinationGuard;
  settings: PhaseSettings;
  vantage: ProbeResult['vantage'];
  log: Logger;
  /** Where the run's worst event-loop delay is read (default: the process's shared monitor). */
  loop?: LoopDelayMonitor;
}

/** What flows from one phase to the next, kept by the runner: each phase gets only the typed input it needs. */
interface RunState {
  addresses?: readonly string[];
  connection?: Connection;
  /** Closed when the run ends, whatever happened. */
  readonly cleanups: Array<() => void>;
}

/**
 * Runs a spec's phases in order, each with its own timeout and AbortSignal; a phase's output
 * (addresses, a connection) becomes the typed input of the phases after it. The first failure
 * ends the run and later phases are recorded as `skipped`, so the planned path stays visible.
 * `signal` cancels the whole run (deadline, shutdown): the phase then running fails with
 * `interrupted`.
 */
export async function runSpec(spec: ProbeSpec, deps: RunnerDeps, signal: AbortSignal): Promise<RunRecord> {
  const startedAt = new Date().toISOString();
  const loop = deps.loop ?? sharedLoopMonitor();
  const t0 = performance.now();
  const state: RunState = { cleanups: [] };
  if (isIP(spec.endpoint.host) !== 0) state.addresses = [spec.endpoint.host];
  const phases: PhaseResult[] = [];
  let failure: FailureCode | null = null;
  let failedPhase: string | null = null;
  try {
    for (const [index, planned] of spec.phases.entries()) {
      if (failure !== null) {
        phases.push(skippedPhase(planned, spec));
        continue;
      }
      const result = await runPhase(spec, index, deps, state, signal, t0);
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
  const ended = performance.now();
  const loopDelayMs = loop.worstBetween(t0, ended);
  return {
    schema: RESULT_SCHEMA,
    id: randomUUID(),
    software: { name: 'callprobe', version: VERSION },
    vantage: deps.vantage,
    service: spec.service,
    target: spec.target,
    path: spec.path,
    location: spec.location,
    startedAt,
    durationMs: roundMs(ended - t0),
    phases,
    failure,
    failedPhase,
    timing: { eventLoopDelayMaxMs: loopDelayMs, reliable: loopDelayMs <= UNRELIABLE_LOOP_DELAY_MS },
  };
}

async function runPhase(
  spec: ProbeSpec,
  index: number,
  deps: RunnerDeps,
  state: RunState,
  runSignal: AbortSignal,
  t0: number,
): Promise<PhaseResult> {
  const planned = spec.phases[index]!;
  const definition = deps.phases.get(planned.name);
  const controller = new AbortController();
  // The phase ends at its timeout or with the run, whichever comes first: both abort its signal and
  // settle the race below directly (one listener fewer per phase: AbortSignal listeners are not cheap).
  let stop: (reason: unknown) => void = () => {};
  const stopped = new Promise<never>((_, reject) => (stop = reject));
  const end = (reason: unknown): void => {
    controller.abort(reason);
    stop(reason);
  };
  const onRunAbort = (): void => end(interruptedBy(runSignal.reason));
  if (runSignal.aborted) onRunAbort();
  else runSignal.addEventListener('abort', onRunAbort, { once: true });
  const evidence: Evidence = {};
  const trace = new PhaseTrace(evidence, { probe: spec.id, phase: planned.name });
  const timer = setTimeout(() => end(timeoutFailure(planned, trace)), planned.timeoutMs);
  let childLog: Logger | undefined;
  const ctx: PhaseContext = {
    service: spec.service,
    target: spec.target,
    location: spec.location,
    endpoint: spec.endpoint,
    params: planned.params,
    signal: controller.signal,
    timeoutMs: planned.timeoutMs,
    guard: deps.guard,
    settings: deps.settings,
    // Made on first use: most phases never log, and a child logger per phase showed in profiles.
    get log() {
      return (childLog ??= deps.log.child({ probe: spec.id, phase: planned.name }));
    },
    evidence,
    trace,
    endpointUsed: defaultEndpoint(spec),
    atRunEnd: (cleanup) => state.cleanups.push(cleanup),
  };
  if (TRACE_CHANNELS.phaseStart.hasSubscribers) TRACE_CHANNELS.phaseStart.publish({ probe: spec.id, phase: planned.name, endpoint: ctx.endpointUsed });
  const started = performance.now();
  let ended = started;
  let failure: FailureCode | null = null;
  let running: Promise<PhaseOutput> | undefined;
  try {
    if (!definition) throw new ProbeFailure('internal_error', `unknown phase ${planned.name}`);
    // The plan ran this check already; a spec made some other way gets it here, before anything is sent.
    const problem = definition.check?.(planned.params, plannedContext(spec, index, deps.settings)) ?? null;
    if (problem !== null) throw new ProbeFailure('internal_error', `${planned.name}: ${problem}`, { timeoutMs: planned.timeoutMs });
    running = definition.run(ctx, inputFor(definition, planned, state, deps));
    const output = await Promise.race([running, stopped]);
    ended = performance.now();
    if (output && 'addresses' in output) state.addresses = output.addresses;
    if (output && 'connection' in output) state.connection = output.connection;
  } catch (err) {
    ended = performance.now();
    failure = classifyPhaseError(err, ctx, deps, spec);
  } finally {
    clearTimeout(timer);
    runSignal.removeEventListener('abort', onRunAbort);
    // Whatever the phase was doing in the background is over now.
    if (!controller.signal.aborted) controller.abort(PHASE_FINISHED);
  }
  // A phase told to stop may still owe the server a goodbye (TURN's Refresh with lifetime 0):
  // give it a bounded moment before the run's cleanups close the sockets under it.
  if (failure !== null && running) await settleWithin(running, PHASE_SETTLE_MS);
  trace.settle();
  const durationMs = roundMs(ended - started);
  if (TRACE_CHANNELS.phaseEnd.hasSubscribers) {
    TRACE_CHANNELS.phaseEnd.publish({ probe: spec.id, phase: planned.name, ok: failure === null, failure, durationMs });
  }
  return {
    phase: planned.name,
    endpoint: ctx.endpointUsed,
    ...(ctx.transport ? { transport: ctx.transport } : {}),
    startedAt: roundMs(started - t0),
    durationMs,
    ok: failure === null,
    failure,
    // A snapshot: a phase still finishing in the background cannot change a returned result.
    evidence: { ...evidence },
  };
}

/**
 * The phase ran out of time. Whether anything at all came back tells a silent path from one that
 * answered part of the way (a censor that lets the first bytes through), so the text says which.
 */
function timeoutFailure(planned: PlannedPhase, trace: PhaseTrace): ProbeFailure {
  trace.settle();
  const received = trace.evidence.bytesReceived ?? 0;
  const what = received > 0 ? `partial answer: ${received} bytes, then nothing within ${planned.timeoutMs} ms` : `no answer within ${planned.timeoutMs} ms`;
  return new ProbeFailure('generic_timeout_error', `${planned.name}: ${what}`, { timeoutMs: planned.timeoutMs });
}

/**
 * The typed input a phase stands on, built once here: the plan put the phases that produce it
 * before this one, so a missing input is a bug of ours (`internal_error`), never the network's.
 * A connection's destination passes the guard again: every send passes it, literally.
 */
function inputFor(definition: PhaseDefinition, planned: PlannedPhase, state: RunState, deps: RunnerDeps): PhaseInput {
  const needs = definition.needsFor?.(planned.params) ?? definition.needs;
  if (needs === 'nothing') return { kind: 'nothing' };
  if (needs === 'addresses') {
    const [first, ...rest] = state.addresses ?? [];
    if (first === undefined) throw new ProbeFailure('internal_error', `${planned.name} needs addresses and no phase before it found any`);
    return { kind: 'addresses', addresses: [first, ...rest] };
  }
  const connection = state.connection;
  if (!connection) throw new ProbeFailure('internal_error', `${planned.name} needs an open connection and no phase before it opened one`);
  deps.guard.assert(connection.remote.address);
  return { kind: 'connection', connection };
}

/** Shared: every phase ends this way, and an Error (with its stack) per phase shows in profiles. */
const PHASE_FINISHED = new ProbeFailure('interrupted', 'phase finished');

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
  if (isProgrammingError(err)) {
    deps.log.error({ err, probe: spec.id, phase: ctx.endpointUsed }, 'internal error in phase');
    ctx.evidence.error = `${err.name}: ${err.message}`;
    return 'internal_error';
  }
  const c = classify(err);
  ctx.evidence.error = c.error;
  // What the failure itself carries (a raw TLS code, a denied address) is more precise.
  Object.assign(ctx.evidence, c.evidence);
  if (err instanceof ProbeFailure && err.operation) ctx.evidence.failedOperation = err.operation;
  if (c.code === 'unknown_failure') deps.log.warn({ err, probe: spec.id }, 'unmapped failure: add it to failure.ts');
  return c.code;
}

function interruptedBy(reason: unknown): ProbeFailure {
  if (reason instanceof ProbeFailure) return reason;
  return new ProbeFailure('interrupted', typeof reason === 'string' ? reason : 'run cancelled');
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
