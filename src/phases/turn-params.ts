/**
 * What the `turn` phase and media's TURN path share about the volunteer's TURN servers: which
 * credentials a target uses, the check that the config has them, and the release wait.
 */
import { z } from 'zod';
import type { PhaseSettings } from '../types.js';

export const turnReleaseParams = {
  /** Time kept at the end of the phase's timeout to release the allocation (Refresh, lifetime 0). */
  releaseWaitMs: z.number().int().min(100).max(10_000).default(2000),
};

/** The config's `turn` entry a target's credentials come from: the `credential` param, else the target's name. */
export function turnCredentialName(p: { credential?: string | undefined }, target: string): string {
  return p.credential ?? target;
}

/** The plan's check: the config's `turn` section has the credentials the target names. */
export function turnCredentialProblem(p: { credential?: string | undefined }, target: string, settings: PhaseSettings): string | null {
  const name = turnCredentialName(p, target);
  return settings.turnCredentials?.has(name) ? null : `needs credentials "${name}" in the config's turn section`;
}
