import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/loader.js';
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
