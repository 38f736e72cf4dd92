import { describe } from 'vitest';
import { labUnavailableReason } from './netns.js';

/**
 * What to do with a lab suite: run it, skip it (not root: a developer's plain `npm test`), or
 * fail (CI=true must never silently skip the lab, design.md §13).
 */
export function labDecision(reason: string | null, env: NodeJS.ProcessEnv = process.env): 'run' | 'skip' | 'fail' {
  if (reason === null) return 'run';
  return env.CI === 'true' ? 'fail' : 'skip';
}

let cachedReason: string | null | undefined;

/** `describe` for suites that build labs: runs as root, skips with a reason otherwise, throws under CI. */
export function describeLab(name: string, fn: () => void): void {
  cachedReason ??= labUnavailableReason();
  const reason = cachedReason;
  switch (labDecision(reason)) {
    case 'run':
      describe(name, fn);
      return;
    case 'fail':
      throw new Error(`${name}: ${reason} (CI=true: lab tests must run, not skip)`);
    case 'skip':
      console.warn(`skipping "${name}": ${reason}`);
      describe.skip(`${name} [skipped: ${reason}]`, fn);
  }
}
