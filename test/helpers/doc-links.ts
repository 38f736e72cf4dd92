/**
 * Link checking for the documentation, by remark-validate-links (remarkjs). It runs through
 * unified-engine, as remark-cli runs it: the plugin's Node API alone checks that linked files exist
 * but not the headings in other files; with the engine's file set it checks both.
 *
 * References to the docs from code (`docs/protocols.md#stun-and-turn` in a comment) are checked by
 * the same plugin: they are written as links into an in-memory Markdown file at the repository
 * root and validated with the documents, so an anchor is judged by the same slugs GitHub uses.
 */
import { readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { remark } from 'remark';
import remarkValidateLinks from 'remark-validate-links';
import type { Plugin } from 'unified';
import { engine } from 'unified-engine';
import { VFile } from 'vfile';

/** A reference to a document under docs/ found outside Markdown, with where it was found. */
export interface DocReference {
  file: string;
  line: number;
  target: string;
}

/** `docs/<name>.md`, optionally `#anchor`; not the tail of a longer path (another repository's docs/). */
const DOC_REFERENCE = /(?<![\w./-])docs\/[a-z0-9-]+\.md(?:#[A-Za-z0-9_-]+)?/g;

/** Every `docs/<name>.md[#anchor]` in the given files (paths relative to root). */
export function findDocReferences(root: string, files: readonly string[]): DocReference[] {
  const found: DocReference[] = [];
  for (const file of files) {
    readFileSync(join(root, file), 'utf8')
      .split('\n')
      .forEach((text, i) => {
        for (const m of text.matchAll(DOC_REFERENCE)) found.push({ file, line: i + 1, target: m[0] });
      });
  }
  return found;
}

/** unified-engine types a plugin tuple's options as unknown; remark-validate-links types its own. */
const validateLinks = remarkValidateLinks as unknown as Plugin<unknown[]>;

/** The in-memory file the references are written into; never on disk. */
const REFERENCES_FILE = 'doc-references-from-code.md';

/**
 * Runs remark-validate-links over `markdownFiles` (relative to `root`) and over `references`, and
 * returns every problem as one line: `FILE:LINE: reason` for a document, `FILE:LINE: TARGET: reason`
 * for a reference from code.
 */
export async function linkProblems(root: string, markdownFiles: readonly string[], references: readonly DocReference[] = []): Promise<string[]> {
  const referencesFile = new VFile({
    path: join(root, REFERENCES_FILE),
    cwd: root,
    value: references.map((r) => `- [${r.file}:${r.line}](${r.target})\n`).join(''),
  });
  const files = await new Promise<VFile[]>((resolve, reject) => {
    engine(
      {
        processor: remark,
        cwd: root,
        files: [...markdownFiles, ...(references.length > 0 ? [referencesFile] : [])],
        plugins: [[validateLinks, { repository: false, root }]],
        detectConfig: false,
        detectIgnore: false,
        output: false,
        out: false,
        color: false,
        streamError: new PassThrough(),
      },
      (err, _code, context) => (err ? reject(err) : resolve(context?.files ?? [])),
    );
  });
  const problems: string[] = [];
  for (const file of files) {
    for (const message of file.messages) {
      const line = message.line ?? 0;
      if (file === referencesFile) {
        const ref = references[line - 1];
        problems.push(ref ? `${ref.file}:${ref.line}: ${ref.target}: ${message.reason}` : `${REFERENCES_FILE}:${line}: ${message.reason}`);
      } else {
        problems.push(`${relative(root, resolve(root, file.path))}:${line}: ${message.reason}`);
      }
    }
  }
  return problems;
}
