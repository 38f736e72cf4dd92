import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'config');
const root = process.getuid?.() === 0;
if (!root && process.env.CI === 'true') throw new Error('these tests run `callprobe run` in a network namespace of its own: run them as root');

/** The CLI on a file that must be refused: exit code 2, the problem on stderr, nothing started. */
describe('files that must never start a daemon', () => {
  const dir = mkdtempSync(join(tmpdir(), 'callprobe-refused-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('check-config: an empty or comments-only file is exit 2 at FILE:1:1', () => {
    for (const name of ['invalid-empty.yaml', 'invalid-comments-only.yaml']) {
      const out = spawnSync(process.execPath, [CLI, 'check-config', join(FIXTURES, name)], { encoding: 'utf8', timeout: 30_000 });
      expect(out.status).toBe(2);
      expect(out.stdout).toBe('');
      expect(out.stderr).toBe(`${join(FIXTURES, name)}:1:1: the file is empty (nothing but whitespace or comments): write {} for every default\n`);
    }
  });

  it('check-config: an alias bomb is exit 2 with its position, fast, within a 64 MiB heap', () => {
    const started = performance.now();
    const out = spawnSync(process.execPath, ['--max-old-space-size=64', CLI, 'check-config', join(FIXTURES, 'invalid-alias-bomb.yaml')], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out.stderr).toBe(
      `${join(FIXTURES, 'invalid-alias-bomb.yaml')}:8:8: aliases expand the document by more than 10000 nodes (nested aliases, as in a "billion laughs"): write the values out\n`,
    );
    expect(out.status).toBe(2);
    expect(performance.now() - started).toBeLessThan(5_000); // node's own start included
  });

  // `run` on an empty file used to start on the embedded catalogues (the real services): it runs
  // here in a network namespace of its own, where only a loopback that is down exists, and with
  // its state directory in the test's own directory, so even a regression sends nothing anywhere.
  it.skipIf(!root)('run: an empty config is exit 2 and starts nothing', () => {
    const state = join(dir, 'state');
    const out = spawnSync('unshare', ['--net', process.execPath, CLI, 'run', '--config', join(FIXTURES, 'invalid-empty.yaml')], {
      encoding: 'utf8',
      timeout: 10_000,
      env: { ...process.env, STATE_DIRECTORY: state },
    });
    expect(out.stderr).toBe(`${join(FIXTURES, 'invalid-empty.yaml')}:1:1: the file is empty (nothing but whitespace or comments): write {} for every default\n`);
    expect(out.status).toBe(2);
    expect(out.stdout).toBe('');
    expect(existsSync(state)).toBe(false);
  });
});
