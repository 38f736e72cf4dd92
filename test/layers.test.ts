import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '..', 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : name.endsWith('.ts') ? [path] : [];
  });
}

/** The src/ directory (or top-level file) each relative import of a file lands in. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'/gm)].map((m) => relative(SRC, resolve(dirname(file), m[1]!)).split('/')[0]!);
}

/**
 * The layering rule of docs/architecture.md#layers, kept true by a test: the lower layers never
 * import the upper ones (a phase cannot read the plan or decide a verdict; the reflector cannot
 * probe), and a phase file stays one job (issue 10: none over 250 lines).
 */
describe('layers', () => {
  const lower: Record<string, string[]> = {
    protocol: ['net', 'media', 'phases', 'config', 'plan', 'engine', 'sinks', 'server', 'reflector', 'report', 'cli.ts', 'daemon.ts'],
    media: ['net', 'phases', 'config', 'plan', 'engine', 'sinks', 'server', 'reflector', 'report', 'cli.ts', 'daemon.ts'],
    net: ['phases', 'config', 'plan', 'engine', 'sinks', 'server', 'reflector', 'report', 'cli.ts', 'daemon.ts'],
    phases: ['config', 'plan', 'engine', 'sinks', 'server', 'reflector', 'report', 'cli.ts', 'daemon.ts'],
    reflector: ['phases', 'plan', 'engine', 'sinks', 'server', 'report', 'cli.ts', 'daemon.ts'],
  };
  for (const [layer, forbidden] of Object.entries(lower)) {
    it(`${layer}/ imports none of ${forbidden.join(', ')}`, () => {
      const wrong = files(join(SRC, layer)).flatMap((f) => importsOf(f).filter((to) => forbidden.includes(to)).map((to) => `${relative(SRC, f)} -> ${to}`));
      expect(wrong).toEqual([]);
    });
  }

  it('reads the imports it judges (the rule would pass vacuously otherwise)', () => {
    expect(importsOf(join(SRC, 'reflector', 'server.ts'))).toEqual(expect.arrayContaining(['net', 'config', 'reflector']));
    expect(importsOf(join(SRC, 'daemon.ts'))).toEqual(expect.arrayContaining(['engine', 'sinks', 'server']));
  });

  it('no file in src/phases is over 250 lines', () => {
    const long = files(join(SRC, 'phases'))
      .map((f) => [relative(SRC, f), readFileSync(f, 'utf8').split('\n').length - 1] as const)
      .filter(([, lines]) => lines > 250);
    expect(long).toEqual([]);
  });
});
