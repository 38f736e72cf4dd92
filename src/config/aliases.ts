import { isAlias, isCollection, isPair, visit, type Document, type Node } from 'yaml';

/**
 * How many nodes aliases may add to a document. `toJS()` shares an anchor's value among its
 * aliases, but validation walks every copy: nine levels of nine aliases (the "billion laughs")
 * are a billion nodes to walk. A real config or catalogue adds a few hundred at most.
 */
export const MAX_ALIASED_NODES = 10_000;

export interface AliasProblem {
  /** Where the offending alias is in the text. */
  offset: number;
  message: string;
}

/**
 * The first alias that cannot be read safely, in document order: one that names no anchor before
 * it, one inside the node it names (a cycle), or the one that takes the nodes added by aliases
 * over `limit`. Counts without expanding anything, so it costs one pass over the text's own nodes.
 */
export function aliasProblem(doc: Document, limit = MAX_ALIASED_NODES): AliasProblem | null {
  // An alias names the last node with that anchor before it in document order (YAML 1.2 §3.2.2.2).
  const anchors = new Map<string, Node>();
  const targets = new Map<Node, Node | undefined>();
  visit(doc, {
    Node(_key, node) {
      if (isAlias(node)) targets.set(node, anchors.get(node.source));
      else if (node.anchor) anchors.set(node.anchor, node);
    },
  });
  if (targets.size === 0) return null;

  const sizes = new Map<Node, number>();
  const open = new Set<Node>();
  let problem: AliasProblem | null = null;
  /** Nodes `node` stands for once aliases are expanded; null once a problem is found. */
  const expanded = (node: unknown): number | null => {
    if (problem) return null;
    if (isPair(node)) {
      const key = expanded(node.key);
      const value = key === null ? null : expanded(node.value);
      return key === null || value === null ? null : key + value;
    }
    if (!node || typeof node !== 'object') return 0;
    const n = node as Node;
    const known = sizes.get(n);
    if (known !== undefined) return known;
    if (isAlias(n)) {
      const target = targets.get(n);
      const offset = n.range?.[0] ?? 0;
      if (!target) problem = { offset, message: `alias *${n.source} names no anchor &${n.source} before it` };
      else if (open.has(target)) problem = { offset, message: `alias *${n.source} is inside the node it names (a cycle)` };
      return problem ? null : expanded(target);
    }
    open.add(n);
    let total = 1;
    for (const item of isCollection(n) ? n.items : []) {
      const size = expanded(item);
      if (size === null) return null;
      total += size;
    }
    open.delete(n);
    sizes.set(n, total);
    return total;
  };

  // Walk the text's own nodes in order, adding what each alias expands to.
  let added = 0;
  visit(doc, {
    Alias(_key, alias) {
      const size = expanded(alias);
      if (size === null) return visit.BREAK;
      added += size;
      if (added > limit) {
        problem = {
          offset: alias.range?.[0] ?? 0,
          message: `aliases expand the document by more than ${limit} nodes (nested aliases, as in a "billion laughs"): write the values out`,
        };
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return problem;
}
