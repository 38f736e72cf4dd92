import { describe } from 'vitest';

/**
 * What to do with a suite that needs something outside Node (root for the lab, coturn, Chromium):
 * run it, skip it with the reason (a developer's plain `npm test` without them), or fail (CI=true
 * must never silently skip).
 */
export function decideSuite(missing: string | null, env: NodeJS.ProcessEnv = process.env): 'run' | 'skip' | 'fail' {
  if (missing === null) return 'run';
  return env.CI === 'true' ? 'fail' : 'skip';
}

/** `describe` that runs when nothing is `missing`, skips with the reason otherwise, and throws under CI=true. */
export function describeNeeding(missing: string | null, name: string, fn: () => void): void {
  switch (decideSuite(missing)) {
    case 'run':
      describe(name, fn);
      return;
    case 'fail':
      throw new Error(`${name}: ${missing} (CI=true: these tests must run, not skip)`);
    case 'skip':
      console.warn(`skipping "${name}": ${missing}`);
      describe.skip(`${name} [skipped: ${missing}]`, fn);
  }
}
