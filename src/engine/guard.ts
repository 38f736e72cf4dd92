import { ProbeFailure } from '../failure.js';
import { embeddedIpv4, normalizeAddress, parseCidr, type Cidr } from '../net/cidr.js';
import type { DestinationGuard, GuardDecision, GuardPurpose, SafetyPolicy } from '../types.js';
import { SPECIAL_PURPOSE_CIDRS } from './ranges.js';

export type { GuardDecision, SafetyPolicy };
type Purpose = GuardPurpose;

/**
 * The one gate every connect, send and DNS query passes through (docs/architecture.md#safety-guard).
 *
 * Rules, in order: a `deny` entry always wins; otherwise the most specific matching prefix among
 * `allow` and the special-purpose list decides, and on equal length the explicit `allow` wins (so
 * `allow: [198.18.0.0/15]` opens the lab range but `allow: [0.0.0.0/0]` never opens 10/8); an
 * address matching neither is allowed only when `allow` is empty (the public internet) and denied
 * otherwise. IPv4-mapped, NAT64 and 6to4 forms are judged as the IPv4 host they reach.
 */
const MAX_REMEMBERED = 4096;

export class SafetyGuard implements DestinationGuard {
  private readonly allow: Cidr[];
  private readonly deny: Cidr[];
  private readonly resolvers: Set<string>;
  /** Decisions are pure functions of the policy: memoised, as matching every range costs more than a STUN transaction. */
  private readonly decisions = new Map<string, GuardDecision>();

  constructor(policy: SafetyPolicy = {}) {
    this.allow = (policy.allow ?? []).map(parseCidr);
    this.deny = (policy.deny ?? []).map(parseCidr);
    this.resolvers = new Set((policy.resolvers ?? []).map((r) => normalizeAddress(r) ?? r));
  }

  check(address: string, purpose: Purpose = 'probe'): GuardDecision {
    const key = `${purpose} ${address}`;
    let decision = this.decisions.get(key);
    if (decision === undefined) {
      // Bounded: a hostile resolver answering with endless addresses cannot grow it without limit.
      if (this.decisions.size >= MAX_REMEMBERED) this.decisions.clear();
      decision = this.decide(address, purpose);
      this.decisions.set(key, decision);
    }
    return decision;
  }

  private decide(address: string, purpose: Purpose): GuardDecision {
    const norm = normalizeAddress(address);
    if (norm === null) return { allowed: false, rule: 'not an IP address', bogon: false };
    const embedded = embeddedIpv4(norm);
    if (embedded !== null) {
      const inner = this.check(embedded, purpose);
      if (!inner.allowed) return { ...inner, rule: `${inner.rule} (embedded in ${norm})` };
    }
    if (purpose === 'dns-server' && this.resolvers.has(norm)) {
      return { allowed: true, rule: 'configured resolver', bogon: false };
    }
    const denied = this.deny.find((c) => c.contains(norm));
    if (denied) return { allowed: false, rule: `deny ${denied.text}`, bogon: false };

    const allowed = mostSpecific(this.allow.filter((c) => c.contains(norm)), (c) => c.prefix);
    const special = mostSpecific(
      SPECIAL_PURPOSE_CIDRS.filter((s) => s.cidr.contains(norm)),
      (s) => s.cidr.prefix,
    );
    if (special && (!allowed || allowed.prefix < special.cidr.prefix)) {
      return { allowed: false, rule: `special-purpose ${special.cidr.text} (${special.name})`, bogon: true };
    }
    if (allowed) return { allowed: true, rule: `allow ${allowed.text}`, bogon: false };
    if (this.allow.length === 0) return { allowed: true, rule: 'public internet', bogon: false };
    return { allowed: false, rule: 'not in allow', bogon: false };
  }

  /** Throws `policy_denied` (nothing may be sent) unless the address is allowed. */
  assert(address: string, purpose: Purpose = 'probe'): void {
    const decision = this.check(address, purpose);
    if (!decision.allowed) {
      throw new ProbeFailure('policy_denied', `destination ${address} refused by safety policy: ${decision.rule}`, {
        deniedAddress: address,
        rule: decision.rule,
      });
    }
  }
}

function mostSpecific<T>(list: readonly T[], prefixOf: (item: T) => number): T | undefined {
  return list.reduce<T | undefined>((best, c) => (!best || prefixOf(c) > prefixOf(best) ? c : best), undefined);
}
