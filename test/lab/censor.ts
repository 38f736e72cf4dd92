import type { Lab } from './netns.js';

/**
 * The censor: one nftables scenario at a time in the censor namespace's `table inet censor`.
 *
 * - `forward_filter` (hook forward) holds the scenario's rules: everything between client and
 *   server crosses it. (The chain is not called "fwd": that is an nft keyword.)
 * - `delivered` (hook postrouting, after every forward verdict) only counts packets that really
 *   left the censor towards an address: applyCensor's `countDelivered` option.
 *
 * A scenario is loaded with one `nft -f` transaction that creates the table if missing, deletes
 * it and re-adds it, so the previous scenario (and its counters) vanish atomically.
 */

export const CENSOR_TABLE = 'censor';
export const CENSOR_CHAIN = 'forward_filter';
export const DELIVERED_CHAIN = 'delivered';

export interface CensorOptions {
  /** Addresses for which to count packets that got through the forward chain: "delivered:<addr>". */
  countDelivered?: string[];
  /**
   * Named sets the rules use, name -> body: `lingering: 'type ipv4_addr; flags timeout;'` gives a
   * censor memory (a rule adds to the set, another drops what is in it, until the entry times out).
   */
  sets?: Record<string, string>;
}

/**
 * What the censor counts on top of a TCP payload: the IPv4 header (20) and a TCP header with the
 * timestamps option (32), as Linux sends every segment after the handshake. (The SYN and SYN-ACK
 * carry more options: leave them out of a counter whose payload is to be computed.)
 */
export const IP_TCP_HEADERS = 52;

export interface RuleCounter {
  packets: number;
  bytes: number;
  chain: string;
  handle: number;
}

/** Builds the nft script for a scenario; exported so a test can show exactly what was loaded. */
export function censorScript(rules: string | readonly string[], opts: CensorOptions = {}): string {
  const lines = (typeof rules === 'string' ? rules.split('\n') : rules).map((l) => l.trim()).filter((l) => l !== '');
  for (const line of lines) {
    // An unbalanced brace would close the chain and let a scenario add hooks elsewhere.
    if (!bracesBalanced(line)) throw new Error(`censor rule has unbalanced braces: ${line}`);
  }
  const delivered = (opts.countDelivered ?? []).map(
    (addr) => `    ${addrFamily(addr)} daddr ${addr} counter comment ${quoteComment(`delivered:${addr}`)}`,
  );
  const sets = Object.entries(opts.sets ?? {}).map(([name, body]) => {
    if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new Error(`censor set name must be lower-case letters, digits and _: ${name}`);
    if (/[{}]/.test(body)) throw new Error(`censor set ${name} must be a plain declaration: ${body}`);
    return `  set ${name} { ${body} }`;
  });
  return [
    `table inet ${CENSOR_TABLE} {}`,
    `delete table inet ${CENSOR_TABLE}`,
    `table inet ${CENSOR_TABLE} {`,
    ...sets,
    `  chain ${CENSOR_CHAIN} {`,
    `    type filter hook forward priority filter; policy accept;`,
    ...lines.map((l) => `    ${l}`),
    `  }`,
    // Priority 300: after the forward hook and after NAT (srcnat = 100), the last look at a packet.
    `  chain ${DELIVERED_CHAIN} {`,
    `    type filter hook postrouting priority 300; policy accept;`,
    ...delivered,
    `  }`,
    `}`,
    '',
  ].join('\n');
}

/** Loads a scenario (the forward chain's rule lines), replacing the previous one atomically. */
export async function applyCensor(lab: Lab, rules: string | readonly string[], opts: CensorOptions = {}): Promise<void> {
  const script = censorScript(rules, opts);
  const res = await lab.run('censor', 'nft', ['-f', '-'], { input: script, timeoutMs: 10_000 });
  if (res.code !== 0) {
    throw new Error(`nft rejected the censor scenario: ${res.stderr.trim()}\n--- script ---\n${script}`);
  }
}

/** Removes the censor table: the censor forwards everything again. */
export async function clearCensor(lab: Lab): Promise<void> {
  const script = `table inet ${CENSOR_TABLE} {}\ndelete table inet ${CENSOR_TABLE}\n`;
  const res = await lab.run('censor', 'nft', ['-f', '-'], { input: script, timeoutMs: 10_000 });
  if (res.code !== 0) throw new Error(`nft could not clear the censor: ${res.stderr.trim()}`);
}

/** The ruleset as nft prints it, counters included: for failure messages. */
export async function listCensor(lab: Lab): Promise<string> {
  return lab.exec('censor', 'nft', ['list', 'ruleset']);
}

interface NftJsonRule {
  rule?: {
    family: string;
    table: string;
    chain: string;
    handle: number;
    comment?: string;
    expr?: Array<Record<string, unknown>>;
  };
}

/** Parses `nft -j list ...` output into per-rule counters keyed by rule comment. */
export function parseCounters(json: string): Record<string, RuleCounter> {
  const doc = JSON.parse(json) as { nftables?: NftJsonRule[] };
  const out: Record<string, RuleCounter> = {};
  for (const item of doc.nftables ?? []) {
    const rule = item.rule;
    if (!rule || rule.family !== 'inet' || rule.table !== CENSOR_TABLE || rule.comment === undefined) continue;
    const counter = rule.expr?.find((e) => 'counter' in e)?.counter as { packets: number; bytes: number } | undefined;
    if (!counter) continue;
    if (rule.comment in out) throw new Error(`two censor rules share the comment "${rule.comment}"`);
    out[rule.comment] = { packets: counter.packets, bytes: counter.bytes, chain: rule.chain, handle: rule.handle };
  }
  return out;
}

/**
 * Counters of every censor rule that has both `counter` and `comment "name"`, keyed by name.
 * Rules without a comment or without a counter are not reported.
 */
export async function counters(lab: Lab): Promise<Record<string, RuleCounter>> {
  const res = await lab.run('censor', 'nft', ['-j', 'list', 'table', 'inet', CENSOR_TABLE], { timeoutMs: 10_000 });
  if (res.code !== 0) {
    if (/No such file/.test(res.stderr)) return {};
    throw new Error(`nft -j list failed: ${res.stderr.trim()}`);
  }
  return parseCounters(res.stdout);
}

/** The TCP payload of the segments a counter counted (none of them a SYN): its bytes minus their headers. */
export function tcpPayloadOf(c: Pick<RuleCounter, 'packets' | 'bytes'>): number {
  return c.bytes - IP_TCP_HEADERS * c.packets;
}

/** Packets counted by one named rule; throws (listing the ruleset) if there is no such rule. */
export async function counter(lab: Lab, name: string): Promise<RuleCounter> {
  const all = await counters(lab);
  const c = all[name];
  if (!c) throw new Error(`no censor rule with a counter and comment "${name}"\n${await listCensor(lab)}`);
  return c;
}

/** The elements of one of the censor's sets now (expired ones gone), as nft prints them. */
export async function setElements(lab: Lab, name: string): Promise<string[]> {
  const res = await lab.run('censor', 'nft', ['-j', 'list', 'set', 'inet', CENSOR_TABLE, name], { timeoutMs: 10_000 });
  if (res.code !== 0) throw new Error(`nft -j list set ${name} failed: ${res.stderr.trim()}`);
  const doc = JSON.parse(res.stdout) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
  const elems = doc.nftables.find((e) => e.set)?.set?.elem ?? [];
  // A timed element is { elem: { val, timeout, expires } }; a plain one is the value itself.
  return elems.map((e) => String(typeof e === 'object' && e !== null && 'elem' in e ? (e as { elem: { val: unknown } }).elem.val : e));
}

/**
 * A forward-chain rule that counts every packet the client sends towards `address`, without a
 * verdict. Put it first: it then counts attempts, even those a later rule drops, which is what
 * "callprobe sent nothing to X" needs. Counter name: `to:<address>` unless given.
 */
export function countToServer(address: string, name = `to:${address}`): string {
  return `${addrFamily(address)} daddr ${address} counter comment ${quoteComment(name)}`;
}

function bracesBalanced(line: string): boolean {
  let depth = 0;
  for (const ch of line) {
    if (ch === '{') depth++;
    else if (ch === '}' && --depth < 0) return false;
  }
  return depth === 0;
}

function addrFamily(address: string): 'ip' | 'ip6' {
  if (/^\d{1,3}(\.\d{1,3}){3}(\/\d{1,2})?$/.test(address)) return 'ip';
  if (/^[0-9a-fA-F:]+(\/\d{1,3})?$/.test(address) && address.includes(':')) return 'ip6';
  throw new Error(`not an address or prefix: ${address}`);
}

function quoteComment(name: string): string {
  if (!/^[\w.:\/@+-]{1,128}$/.test(name)) throw new Error(`counter name must be plain text (no quotes or spaces): ${name}`);
  return `"${name}"`;
}
