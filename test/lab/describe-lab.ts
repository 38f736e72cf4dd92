import { decideSuite, describeNeeding } from '../helpers/requires.js';
import { labUnavailableReason } from './netns.js';

/**
 * What to do with a lab suite: run it, skip it (not root: a developer's plain `npm test`), or
 * fail (CI=true must never silently skip the lab).
 */
export const labDecision = decideSuite;

let cachedReason: string | null | undefined;

/** `describe` for suites that build labs: runs as root, skips with a reason otherwise, throws under CI. */
export function describeLab(name: string, fn: () => void): void {
  cachedReason ??= labUnavailableReason();
  describeNeeding(cachedReason, name, fn);
}
