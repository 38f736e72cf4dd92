import { DEGRADATION_CODES } from '../failure.js';
import { PHASES } from '../phases/index.js';
import type { PhaseRegistry } from '../phases/types.js';
import type { ControlRef, ProbeResult, Verdict, VerdictScope } from '../result.js';
import type { RunRecord } from '../result.js';

/**
 * Failures that say nothing about the network: our own policy, our bugs, our shutdown, and TURN
 * credentials the volunteer configured wrongly.
 */
const NOT_NETWORK = new Set(['policy_denied', 'internal_error', 'interrupted', 'turn_unauthorized']);

/**
 * Keeps the latest control result per phase and turns runs into verdicts:
 * - `blocked` only when a control succeeded at the same phase recently, with a **scope**: `service`
 *   when a foreign control passed (the foreign internet works there: only this service's
 *   destinations fail), `foreign` when only domestic controls passed and the foreign ones failed
 *   (everything foreign fails: an allowlist regime), and no scope when no foreign control covers
 *   that phase (a block of this service and an allowlist cannot be told apart);
 * - `error` when the controls failed too (scope `network`: the vantage's network is down), when
 *   no recent control covers that phase, or when the failure is silence from a target that may
 *   simply ignore an unsolicited probe and is not known to answer it (the known-responsive rule,
 *   with the reason in the record).
 * The raw phases are always kept: the verdict is an interpretation, the data is the data.
 */
type Remembered = ControlRef & { at: number; family: 4 | 6 | null };

/** What the engine knows of a run beyond its record, for the known-responsive rule. */
export interface JudgeContext {
  /** The failure is a timeout at a phase where silence may only mean "not answering strangers". */
  ambiguousSilence?: boolean;
  /** The target answered this probe at this vantage before, or its catalogue entry says it does. */
  knownToAnswer?: boolean;
}

interface Judgement {
  verdict: Verdict;
  control: ControlRef | null;
  scope: VerdictScope | null;
  reason?: string;
}

export class ControlBoard {
  private readonly latest = new Map<string, Map<string, Remembered>>();

  /**
   * @param maxAgeMs how old a control result may be and still count as "the same cycle".
   * @param phases where a failed phase's `controlPhase` is looked up (the phase that vouches for the network under it).
   */
  constructor(
    private readonly maxAgeMs: number,
    private readonly phases: PhaseRegistry = PHASES,
  ) {}

  /** The same remembered controls under a new freshness window (after a config reload). */
  withMaxAge(maxAgeMs: number): ControlBoard {
    const board = new ControlBoard(maxAgeMs, this.phases);
    for (const [phase, byTarget] of this.latest) board.latest.set(phase, new Map(byTarget));
    return board;
  }

  record(run: RunRecord): void {
    const at = Date.parse(run.startedAt);
    for (const phase of run.phases) {
      let byTarget = this.latest.get(phase.phase);
      if (!byTarget) this.latest.set(phase.phase, (byTarget = new Map()));
      // A phase skipped because an earlier one failed was not reached: for the services leaning on
      // it, the control failed there too (the vantage could not get that far), and the record says
      // where and how it failed instead of pretending no control ran.
      const failed = !phase.ok;
      // Not reached, so over no address family in particular: it replaces whatever this target
      // showed at that phase before, over any family.
      if (phase.skipped) for (const key of [...byTarget.keys()]) if (key.startsWith(`${run.target}/`)) byTarget.delete(key);
      byTarget.set(`${run.target}/${phase.skipped ? null : familyOf(phase.endpoint)}`, {
        target: run.target,
        phase: phase.phase,
        ok: phase.ok,
        startedAt: run.startedAt,
        location: run.location,
        ...(failed ? { failure: run.failure, failedPhase: run.failedPhase } : {}),
        at,
        family: phase.skipped ? null : familyOf(phase.endpoint),
      });
    }
  }

  judge(run: RunRecord, isControl: boolean, now = Date.now(), context: JudgeContext = {}): ProbeResult {
    const { verdict, control, scope, reason } = this.verdictOf(run, isControl, now, context);
    return { ...run, verdict, control, scope, ...(reason ? { reason } : {}) };
  }

  private verdictOf(run: RunRecord, isControl: boolean, now: number, context: JudgeContext): Judgement {
    if (run.failure === null) return { verdict: 'ok', control: null, scope: null };
    if (isControl || NOT_NETWORK.has(run.failure)) return { verdict: 'error', control: null, scope: null };
    if (DEGRADATION_CODES.has(run.failure)) return { verdict: 'degraded', control: null, scope: null };
    const controlPhase = this.phases.get(run.failedPhase ?? '')?.controlPhase ?? run.failedPhase ?? '';
    // An IPv6 failure says nothing about censorship when the vantage may have no IPv6 at all: only a
    // control that reached the network over the same address family can vouch for it.
    const failed = run.phases.find((p) => p.phase === run.failedPhase);
    const family = controlPhase === 'dns' ? null : familyOf(failed?.endpoint ?? '');
    const fresh = [...(this.latest.get(controlPhase)?.values() ?? [])].filter(
      (c) => now - c.at <= this.maxAgeMs && (family === null || c.family === null || c.family === family),
    );
    const foreign = fresh.filter((c) => c.location !== 'domestic');
    const okForeign = foreign.find((c) => c.ok);
    const okDomestic = fresh.find((c) => c.ok && c.location === 'domestic');
    const ok = okForeign ?? okDomestic;
    if (!ok) {
      const failedControl = fresh[0];
      return { verdict: 'error', control: failedControl ? strip(failedControl) : null, scope: failedControl ? 'network' : null };
    }
    if (context.ambiguousSilence && !context.knownToAnswer) {
      return {
        verdict: 'error',
        control: strip(ok),
        scope: null,
        reason: `${run.target} did not answer, but it has not answered this probe at this vantage before and its catalogue entry does not say it answers: its silence is no evidence of a block`,
      };
    }
    if (okForeign) return { verdict: 'blocked', control: strip(okForeign), scope: 'service' };
    // Only domestic controls passed: with a foreign control that failed too, everything foreign fails.
    if (foreign.length > 0) return { verdict: 'blocked', control: strip(ok), scope: 'foreign' };
    return {
      verdict: 'blocked',
      control: strip(ok),
      scope: null,
      reason: `no foreign control covers ${controlPhase}: a block of ${run.service} cannot be told from one of everything foreign`,
    };
  }
}

/** The address family of a phase's endpoint ("[2001:db8::1]:443" is 6), or null for names and URLs. */
function familyOf(endpoint: string): 4 | 6 | null {
  if (endpoint.startsWith('[')) return 6;
  if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(endpoint)) return 4;
  return null;
}

function strip(c: Remembered): ControlRef {
  const { at: _at, family: _family, ...ref } = c;
  return ref;
}
