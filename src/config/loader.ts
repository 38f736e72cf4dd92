import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isMap, isPair, isScalar, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { aliasProblem } from './aliases.js';

/** Every error of a file at once, each as `FILE:LINE:COL: field.path: what is wrong`. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Reads a YAML file and validates it with a schema. A problem is reported at the line and column
 * of the offending value (or of its key, for keys that are not allowed), so a volunteer editing a
 * config over SSH sees exactly where to look.
 */
export function loadYaml<S extends z.ZodType>(file: string, schema: S): z.output<S> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}:1:1: cannot read file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  return parseYaml(text, file, schema);
}

export function parseYaml<S extends z.ZodType>(text: string, file: string, schema: S): z.output<S> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number): string => {
    const { line, col } = lines.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${at(e.pos[0])}: ${e.message.split('\n')[0]}`));
  }
  // A config cut short by a failed write must not quietly become the default plan (which probes
  // the embedded catalogues): an empty document is an error, `{}` asks for every default.
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    throw new ConfigError([`${file}:1:1: the file is empty (nothing but whitespace or comments): write {} for every default`]);
  }
  const aliases = aliasProblem(doc);
  if (aliases) throw new ConfigError([`${at(aliases.offset)}: ${aliases.message}`]);
  // Aliases are bounded above, with a position; yaml's own count (per anchor) would give none.
  const value: unknown = doc.toJS({ maxAliasCount: -1 });
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => {
      const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
      if (issue.code === 'unrecognized_keys') {
        const keys = (issue as { keys: string[] }).keys;
        return keys
          .map((key) => `${at(keyOffset(doc, path, key))}: ${formatPath([...path, key])}: unknown key (not allowed here)`)
          .join('\n');
      }
      return `${at(valueOffset(doc, path))}: ${formatPath(path)}: ${issue.message}`;
    }),
  );
}

function formatPath(path: ReadonlyArray<string | number>): string {
  if (path.length === 0) return '(top level)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** The offset of the deepest node that exists along the path: a missing key points at its parent. */
function valueOffset(doc: Document, path: ReadonlyArray<string | number>): number {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = doc.getIn(path.slice(0, depth), true) as Node | undefined;
    if (node && (node as Node).range) return (node as Node).range![0];
  }
  return 0;
}

function keyOffset(doc: Document, path: ReadonlyArray<string | number>, key: string): number {
  const parent = path.length === 0 ? doc.contents : doc.getIn(path, true);
  if (isMap(parent)) {
    for (const item of parent.items) {
      if (isPair(item) && isScalar(item.key) && String(item.key.value) === key && item.key.range) return item.key.range[0];
    }
  }
  return valueOffset(doc, path);
}

/** `FILE:LINE:COL` of the value at `path`, for problems found after validation (e.g. by the plan). */
export function locate(file: string, path: ReadonlyArray<string | number>): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return `${file}:1:1`;
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines });
  const { line, col } = lines.linePos(valueOffset(doc, path));
  return `${file}:${line}:${col}`;
}

export { formatPath };
