import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { hexPrefix } from '../evidence.js';
import { normalizeAddress } from '../net/cidr.js';
import { parseHostPort } from '../net/address.js';
import type { PhaseRegistry } from '../phases/types.js';
import type { ProbeResult } from '../result.js';

/**
 * The vantage's own addresses out of everything callprobe shows: records, the API, the page, the
 * logs and `callprobe once --json` (README "Privacy"). OONI does the same by default (its
 * ScrubMeasurement replaces the probe's IP everywhere); for a volunteer in a censoring country the
 * public IP in a published record is a safety problem.
 *
 * Each phase declares where its evidence carries an address of ours (`ownAddresses` on its
 * definition: our socket's local address, the STUN mapped address, a TURN relayed address...).
 * Those values become a token, and every other occurrence of the same IP anywhere in the record
 * (an error string, a reason) is replaced by the same token:
 *
 *     own-v4:3f9a2c71:54321     own-v6:0b6e1d42:3478     own-v4:3f9a2c71 (no port where none was given)
 *
 * The hex is the first 4 bytes of HMAC-SHA256(install key, IP): the same address always gives the
 * same token at this vantage, so "did my public address or NAT mapping change" stays visible, and
 * nobody without the key (kept in the data directory, never in a record) can test a guess. Ports
 * are kept: whether the mapped port equals the local one is what tells NAT behaviour apart, and a
 * port alone identifies nobody.
 *
 * An IP the record probes (a phase's endpoint, the addresses it resolved) is a destination, not
 * the vantage: it is tokenised where declared but not searched for elsewhere. A TURN relayed
 * address is on the TURN server, whose own address the record is about; on loopback our socket's
 * address is also the target's.
 */
export class AddressScrubber {
  constructor(
    private readonly key: Buffer,
    private readonly phases: PhaseRegistry,
  ) {}

  /** The token for one address, with its port when given. */
  token(ip: string, port?: number): string {
    const canonical = normalizeAddress(ip) ?? ip;
    const digest = createHmac('sha256', this.key).update(canonical).digest();
    const family = isIP(canonical) === 6 ? 'v6' : 'v4';
    return `own-${family}:${hexPrefix(digest, 4)}${port === undefined ? '' : `:${port}`}`;
  }

  /**
   * A copy of the record without the vantage's addresses. Idempotent (a token is no address), so
   * records written before scrubbing existed are safe to pass through again when read back.
   */
  scrub(result: ProbeResult): ProbeResult {
    const copy = structuredClone(result);
    const own = new Set<string>();
    for (const phase of copy.phases) {
      for (const path of this.phases.get(phase.phase)?.ownAddresses ?? []) {
        rewrite(phase.evidence, path.split('.'), (value) => {
          const address = addressIn(value);
          if (!address) return value;
          own.add(normalizeAddress(address.ip) ?? address.ip);
          return this.token(address.ip, address.port);
        });
      }
    }
    const destinations = destinationsOf(copy);
    const searched = [...own].filter((ip) => !destinations.has(ip));
    if (searched.length === 0) return copy;
    const replacers = searched.flatMap((ip) => this.replacers(ip));
    return replaceStrings(copy, (text) => replacers.reduce((t, [pattern, by]) => t.replace(pattern, by), text)) as ProbeResult;
  }

  /** Patterns for one IP in free text, endpoint forms (with their port) first, then the bare address. */
  private replacers(ip: string): Array<[RegExp, (match: string, port?: string) => string]> {
    const v6 = isIP(ip) === 6;
    const quoted = ip.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    // Not part of a longer address: no address character may touch the match.
    const edge = v6 ? '[0-9A-Fa-f:.]' : '[0-9.]';
    const bare = `(?<!${edge})${quoted}(?!${edge})`;
    const withPort = (_m: string, port?: string): string => this.token(ip, Number(port));
    const forms: Array<[RegExp, (match: string, port?: string) => string]> = [];
    if (v6) forms.push([new RegExp(`\\[${quoted}\\]:(\\d{1,5})(?!\\d)`, 'gi'), withPort]);
    else {
      // The IPv4-mapped forms a dual-stack socket reports, before the dotted part alone.
      forms.push([new RegExp(`\\[::ffff:${quoted}\\]:(\\d{1,5})(?!\\d)`, 'gi'), withPort]);
      forms.push([new RegExp(`(?<![0-9A-Fa-f:.])::ffff:${quoted}(?!${edge})`, 'gi'), () => this.token(ip)]);
      forms.push([new RegExp(`${bare}:(\\d{1,5})(?!\\d)`, 'g'), withPort]);
    }
    forms.push([new RegExp(bare, v6 ? 'gi' : 'g'), () => this.token(ip)]);
    return forms;
  }
}

/** The IPs the record's phases were sent to: their endpoints and the addresses they resolved. */
function destinationsOf(r: ProbeResult): Set<string> {
  const out = new Set<string>();
  const add = (value: unknown): void => {
    const a = addressIn(value);
    if (a) out.add(normalizeAddress(a.ip) ?? a.ip);
  };
  for (const p of r.phases) {
    add(p.endpoint);
    if (Array.isArray(p.evidence.addresses)) p.evidence.addresses.forEach(add);
  }
  return out;
}

/** An IP literal with an optional port ("198.18.1.2:5000", "[2001:db8::1]:3478", "198.18.1.2"), or null. */
function addressIn(value: unknown): { ip: string; port?: number } | null {
  if (typeof value !== 'string') return null;
  if (isIP(value) !== 0) return { ip: value };
  const hp = parseHostPort(value, -1);
  if (!hp || isIP(hp.host) === 0) return null;
  return hp.port === -1 ? { ip: hp.host } : { ip: hp.host, port: hp.port };
}

/** Applies `fn` to the value at an evidence path: `a.b`, with `a[]` for every element of an array. */
function rewrite(node: unknown, path: string[], fn: (value: unknown) => unknown): void {
  if (node === null || typeof node !== 'object' || path.length === 0) return;
  const [head, ...rest] = path as [string, ...string[]];
  const many = head.endsWith('[]');
  const key = many ? head.slice(0, -2) : head;
  const record = node as Record<string, unknown>;
  if (!(key in record)) return;
  if (many) {
    const list = record[key];
    if (!Array.isArray(list)) return;
    list.forEach((item, i) => {
      if (rest.length === 0) list[i] = fn(item);
      else rewrite(item, rest, fn);
    });
  } else if (rest.length === 0) record[key] = fn(record[key]);
  else rewrite(record[key], rest, fn);
}

/** Every string in a JSON value (keys too) through `fn`. */
function replaceStrings(value: unknown, fn: (text: string) => string): unknown {
  if (typeof value === 'string') return fn(value);
  if (Array.isArray(value)) return value.map((v) => replaceStrings(v, fn));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [fn(k), replaceStrings(v, fn)]));
  }
  return value;
}

/** The install key's file in the data directory. */
export function installKeyFile(dataDir: string): string {
  return join(dataDir, 'state', 'install-key');
}

/**
 * The per-install key of the address tokens: 32 random bytes as hex, created on first start with
 * mode 0600 and kept for good (a new key gives every address a new token, which would look like a
 * changed address in the history). A file that is not such a key is an error naming it, never
 * silently replaced.
 */
export function loadInstallKey(dataDir: string): Buffer {
  const file = installKeyFile(dataDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
    const key = randomBytes(32);
    try {
      // 'wx': two processes starting at once (the daemon and `once`) never overwrite each other's key.
      writeFileSync(file, key.toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
      return key;
    } catch (raced) {
      if ((raced as NodeJS.ErrnoException).code !== 'EEXIST') throw raced;
      text = readFileSync(file, 'utf8');
    }
  }
  const hex = text.trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${file} is not an install key (64 hex digits): delete it to make a new one (address tokens will change)`);
  return Buffer.from(hex, 'hex');
}

/** What a sink is handed: the record as it may be shown, scrubbed unless the volunteer opted out. */
export type ResultFilter = (result: ProbeResult) => ProbeResult;

/** The filter for a config: `records.keepOwnAddresses: true` keeps the addresses, else they are scrubbed. */
export function ownAddressFilter(opts: { dataDir: string; keepOwnAddresses: boolean; phases: PhaseRegistry }): ResultFilter {
  if (opts.keepOwnAddresses) return (r) => r;
  const scrubber = new AddressScrubber(loadInstallKey(opts.dataDir), opts.phases);
  return (r) => scrubber.scrub(r);
}
