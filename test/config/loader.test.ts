import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { MAX_ALIASED_NODES } from '../../src/config/aliases.js';
import { ConfigError, parseYaml } from '../../src/config/loader.js';
import { configSchema } from '../../src/config/schema.js';
import { PHASES } from '../../src/phases/index.js';
import { loadPlan } from '../../src/plan/index.js';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'config');

function problemsOf(file: string): string[] {
  try {
    loadPlan(file);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => p.replaceAll(`${DIR}/`, ''));
    throw err;
  }
  throw new Error(`${file} was accepted`);
}

describe('invalid configs are rejected with FILE:LINE:COL: field: problem, every problem at once', () => {
  const cases = readdirSync(DIR).filter((f) => f.startsWith('invalid-') && f.endsWith('.expected'));
  it.each(cases)('%s', (expectedFile) => {
    const config = join(DIR, expectedFile.replace(/\.expected$/, '.yaml'));
    // {PHASES} stands for the registered phase names, which grow as phases are added.
    const expected = readFileSync(join(DIR, expectedFile), 'utf8').replaceAll('{PHASES}', [...PHASES.keys()].join(', ')).trim().split('\n');
    expect(problemsOf(config)).toEqual(expected);
  });

  it('names an unreadable file', () => {
    expect(problemsOf(join(DIR, 'missing.yaml'))).toEqual(['missing.yaml:1:1: cannot read file: ENOENT']);
  });
});

describe('YAML aliases', () => {
  const anything = z.unknown();
  /** A 10-node anchor (a sequence of 9 scalars) and `count` aliases to it, one per line. */
  const aliased = (count: number) => `a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb:\n${'  - *a\n'.repeat(count)}`;

  it('are read when they add at most 10,000 nodes, and refused at the alias that adds more', () => {
    expect(MAX_ALIASED_NODES).toBe(10_000);
    expect((parseYaml(aliased(1000), 'f.yaml', anything) as { b: unknown[] }).b).toHaveLength(1000);
    // The 1001st alias is on line 1003, after "  - ".
    expect(() => parseYaml(aliased(1001), 'f.yaml', anything)).toThrow(
      new ConfigError(['f.yaml:1003:5: aliases expand the document by more than 10000 nodes (nested aliases, as in a "billion laughs"): write the values out']),
    );
  });

  it('work as YAML says in a config: the value of the anchor, wherever it is named', () => {
    const file = 'safety:\n  allow: &lab [198.18.0.0/15, 127.0.0.0/8]\n  deny: *lab\n';
    expect(parseYaml(file, 'c.yaml', configSchema).safety).toEqual({ allow: ['198.18.0.0/15', '127.0.0.0/8'], deny: ['198.18.0.0/15', '127.0.0.0/8'] });
  });
});
