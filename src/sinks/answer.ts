import type { ProbeResult, Verdict, VerdictScope } from '../result.js';
import type { TargetLocation, TargetPath } from '../types.js';
import { answerTitle, failingStep, scopeWords } from './words.js';

/**
 * The answer at a glance: one line per service and path ("WhatsApp calls: blocked since ..."),
 * and a banner when the vantage's own network is down or only domestic destinations answer. The
 * page, `callprobe once` and the report say the same thing from the same rules.
 */

export type AnswerState = 'ok' | 'degraded' | 'blocked' | 'unknown' | 'untested';

export type VerdictCounts = Record<Verdict, number>;

export const VERDICTS: readonly Verdict[] = ['ok', 'degraded', 'blocked', 'error'];

export function noVerdicts(): VerdictCounts {
  return { ok: 0, degraded: 0, blocked: 0, error: 0 };
}

/**
 * The state of a set of verdicts (targets' latest ones, or the runs of a time bucket): `blocked`
 * when everything that concluded something is blocked, `ok` when all of it is ok, `degraded`
 * between (some targets or runs fail, or media is degraded), `unknown` when nothing concluded
 * anything (every one `error`), `untested` when there is nothing.
 */
export function stateOf(c: VerdictCounts): AnswerState {
  const judged = c.ok + c.degraded + c.blocked;
  if (judged === 0) return c.error > 0 ? 'unknown' : 'untested';
  if (c.blocked === judged) return 'blocked';
  if (c.ok === judged) return 'ok';
  return 'degraded';
}

/** What the answer needs of one target: what it is, its latest result, and since when that verdict holds. */
export interface TargetState {
  service: string;
  target: string;
  control: boolean;
  path: TargetPath;
  location: TargetLocation;
  latest: Pick<ProbeResult, 'verdict' | 'startedAt' | 'failure' | 'failedPhase' | 'scope'> | null;
  /** When the latest verdict began (errors in between folded in), or null when unknown (`once`). */
  since: string | null;
}

export interface ServiceAnswer {
  service: string;
  path: TargetPath;
  title: string;
  state: AnswerState;
  scope: VerdictScope | null;
  /** When the state began (ISO 8601), or null when not known. */
  since: string | null;
  counts: VerdictCounts;
  targets: number;
  /** The most common failure among the targets that make the state what it is. */
  failing: { phase: string | null; failure: string; targets: number } | null;
  /** The line in words, without the times (those are the reader's: local, UTC, relative). */
  text: string;
}

/** One answer per service and path that has targets, controls excluded; WhatsApp and Telegram first, calls before messaging. */
export function serviceAnswers(targets: readonly TargetState[]): ServiceAnswer[] {
  const groups = new Map<string, TargetState[]>();
  for (const t of targets) {
    if (t.control) continue;
    const key = `${t.service}/${t.path}`;
    groups.set(key, [...(groups.get(key) ?? []), t]);
  }
  return [...groups.values()].map(answerFor).sort(byProminence);
}

const PROMINENT = ['whatsapp', 'telegram'];

function byProminence(a: ServiceAnswer, b: ServiceAnswer): number {
  const rank = (s: string): number => (PROMINENT.includes(s) ? PROMINENT.indexOf(s) : PROMINENT.length);
  return rank(a.service) - rank(b.service) || a.service.localeCompare(b.service) || (a.path === 'calls' ? -1 : 1) - (b.path === 'calls' ? -1 : 1);
}

function answerFor(group: TargetState[]): ServiceAnswer {
  const { service, path } = group[0]!;
  const counts = noVerdicts();
  for (const t of group) if (t.latest) counts[t.latest.verdict]++;
  const state = stateOf(counts);
  // The targets that make the state what it is: the failing ones, or all of them when fine.
  const deciding = group.filter((t) => {
    const v = t.latest?.verdict;
    if (state === 'ok') return v === 'ok';
    if (state === 'unknown') return v === 'error';
    return v === 'blocked' || v === 'degraded';
  });
  const sinces = deciding.map((t) => t.since).filter((s): s is string => s !== null).sort();
  // Fine or blocked since the last target joined in; partly failing since the first one did.
  const since = sinces.length === 0 ? null : state === 'degraded' ? sinces[0]! : sinces.at(-1)!;
  const failing = mostCommon(deciding.filter((t) => t.latest?.failure).map((t) => [t.latest!.failedPhase, t.latest!.failure!] as const));
  const scope = mostCommon(deciding.filter((t) => t.latest?.scope).map((t) => [t.latest!.scope!, null] as const))?.[0] ?? null;
  const ran = group.length - group.filter((t) => !t.latest).length;
  const answer: ServiceAnswer = {
    service,
    path,
    title: answerTitle(service, path),
    state,
    scope: state === 'ok' ? null : scope,
    since,
    counts,
    targets: group.length,
    failing: failing ? { phase: failing[0], failure: failing[1], targets: failing[2] } : null,
    text: '',
  };
  answer.text = sentence(answer, ran);
  return answer;
}

function sentence(a: ServiceAnswer, ran: number): string {
  const of = (n: number): string => `${n} of ${ran} target${ran === 1 ? '' : 's'}`;
  const why = a.failing ? `${failingStep(a.failing.phase, a.failing.failure)}` : '';
  const scope = a.scope ? `; ${scopeWords(a.scope)}` : '';
  switch (a.state) {
    case 'untested':
      return 'not measured yet';
    case 'ok':
      return `works: ${of(a.counts.ok)} ok`;
    case 'blocked':
      return `blocked: ${why}, at ${of(a.counts.blocked)}${scope}`;
    case 'degraded': {
      const parts = [a.counts.blocked ? `${a.counts.blocked} blocked` : '', a.counts.degraded ? `${a.counts.degraded} degraded` : '', a.counts.ok ? `${a.counts.ok} ok` : '']
        .filter(Boolean)
        .join(', ');
      return `${a.counts.blocked ? 'partly blocked' : 'degraded'}: ${why} (${parts} of ${ran})${scope}`;
    }
    case 'unknown':
      return `nothing can be concluded: ${why}, and the controls could not vouch for the network (${of(a.counts.error)})`;
  }
}

/** The most frequent pair and how often it occurs (ties: the first seen). */
function mostCommon<A, B>(pairs: ReadonlyArray<readonly [A, B]>): [A, B, number] | null {
  const seen = new Map<string, [A, B, number]>();
  for (const [a, b] of pairs) {
    const key = JSON.stringify([a, b]);
    const entry = seen.get(key);
    if (entry) entry[2]++;
    else seen.set(key, [a, b, 1]);
  }
  let best: [A, B, number] | null = null;
  for (const entry of seen.values()) if (!best || entry[2] > best[2]) best = entry;
  return best;
}

export interface Banner {
  kind: 'network-down' | 'allowlist';
  since: string | null;
  text: string;
}

/**
 * What overrides the lines below: every control failing (the vantage's own network is down, so
 * nothing below can be concluded), or domestic controls passing while foreign ones fail (an
 * allowlist regime, as Russian mobile networks ran from September 2025).
 */
export function banners(targets: readonly TargetState[]): Banner[] {
  const controls = targets.filter((t) => t.control && t.latest);
  const out: Banner[] = [];
  if (controls.length > 0 && controls.every((t) => t.latest!.failure !== null)) {
    out.push({
      kind: 'network-down',
      since: latestSince(controls),
      text: `Your network looks down: every control failed (${controls.length} of ${controls.length}). Nothing about the services can be concluded until a control works again.`,
    });
    return out;
  }
  const domesticOk = controls.some((t) => t.location === 'domestic' && t.latest!.failure === null);
  const foreign = controls.filter((t) => t.location === 'foreign');
  const foreignDown = foreign.length > 0 && foreign.every((t) => t.latest!.failure !== null);
  const allowlisted = targets.filter((t) => !t.control && t.latest?.scope === 'foreign');
  if ((domesticOk && foreignDown) || allowlisted.length > 0) {
    out.push({
      kind: 'allowlist',
      since: latestSince(domesticOk && foreignDown ? foreign : allowlisted),
      text: 'Only domestic destinations answer: foreign controls fail while domestic ones work. This looks like an allowlist regime, not a block of one service.',
    });
  }
  return out;
}

function latestSince(targets: readonly TargetState[]): string | null {
  const s = targets.map((t) => t.since).filter((x): x is string => x !== null).sort();
  return s.at(-1) ?? null;
}
