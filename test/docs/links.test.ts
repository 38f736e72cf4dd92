/**
 * The repository's documents point only at what exists: every link and #anchor in README.md,
 * docs/*.md and test/lab/README.md, and every `docs/<file>.md#anchor` reference in the code,
 * catalogues, config, tests, benchmarks and scripts, checked by remark-validate-links
 * (test/helpers/doc-links.ts). A fixture repository with broken links on purpose shows that the
 * checker does fail.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { remark } from 'remark';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../lab/netns.js';
import { findDocReferences, linkProblems } from '../helpers/doc-links.js';

const FIXTURE = join(REPO_ROOT, 'test/fixtures/docs');
/** The checker's own fixture and this file, which names the fixture's broken references on purpose. */
const BROKEN_ON_PURPOSE = ['test/fixtures/docs/', 'test/docs/links.test.ts'];

/** The Markdown documents of the repository. */
const DOCUMENTS = ['README.md', ...readdirSync(join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`), 'test/lab/README.md'];

/** The targets of every link in a Markdown file, as remark parses it. */
function linksIn(file: string): string[] {
  const urls: string[] = [];
  const walk = (node: MdNode): void => {
    if (node.type === 'link' && node.url !== undefined) urls.push(node.url);
    node.children?.forEach(walk);
  };
  walk(remark().parse(readFileSync(file, 'utf8')) as MdNode);
  return urls;
}
interface MdNode {
  type: string;
  url?: string;
  children?: MdNode[];
}

/** Every tracked file but those broken on purpose. */
function trackedFiles(): string[] {
  return execFileSync('git', ['ls-files', '-z'], { cwd: REPO_ROOT, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f !== '' && !BROKEN_ON_PURPOSE.some((skip) => f.startsWith(skip)));
}

describe('documentation links', () => {
  it('README links the four documents', () => {
    const links = linksIn(join(REPO_ROOT, 'README.md')).map((url) => url.replace(/#.*/, ''));
    expect(links).toEqual(expect.arrayContaining(['docs/architecture.md', 'docs/protocols.md', 'docs/adding-a-service.md', 'test/lab/README.md']));
  });

  it('every link and #anchor in README.md, docs/*.md and test/lab/README.md points somewhere', async () => {
    expect(await linkProblems(REPO_ROOT, DOCUMENTS)).toEqual([]);
  });

  it('every docs/<file>.md#anchor reference outside the documents points to a file and heading that exist', async () => {
    const references = findDocReferences(
      REPO_ROOT,
      trackedFiles().filter((f) => !DOCUMENTS.includes(f)),
    );
    expect(references.length).toBeGreaterThan(0);
    expect(await linkProblems(REPO_ROOT, DOCUMENTS, references)).toEqual([]);
  });

  it('no tracked file points to the design document that lives outside the repository', () => {
    const external = ['design', 'md'].join('.');
    const mentions = trackedFiles().filter((f) => readFileSync(join(REPO_ROOT, f), 'utf8').includes(external));
    expect(mentions).toEqual([]);
  });
});

describe('the link checker itself (fixture with broken links on purpose)', () => {
  it('reports a missing heading in another file, a missing file and a missing heading in the same file', async () => {
    expect(await linkProblems(FIXTURE, ['README.md', 'docs/guide.md'])).toEqual([
      'README.md:7: Cannot find heading for `#tearing-down` in `docs/guide.md`',
      'README.md:8: Cannot find file `docs/missing.md`',
      'README.md:10: Cannot find heading for `#nowhere`',
    ]);
  });

  it('reports a reference from code to a missing anchor or file, with the source file and line', async () => {
    const references = findDocReferences(FIXTURE, ['src/example.ts']);
    expect(references).toEqual([
      { file: 'src/example.ts', line: 3, target: 'docs/guide.md#setting-up' },
      { file: 'src/example.ts', line: 4, target: 'docs/guide.md#tearing-down' },
      { file: 'src/example.ts', line: 5, target: 'docs/missing.md' },
    ]);
    const problems = await linkProblems(FIXTURE, ['docs/guide.md'], references);
    expect(problems).toEqual([
      'src/example.ts:4: docs/guide.md#tearing-down: Cannot find heading for `#tearing-down` in `docs/guide.md`',
      'src/example.ts:5: docs/missing.md: Cannot find file `docs/missing.md`',
    ]);
  });
});
