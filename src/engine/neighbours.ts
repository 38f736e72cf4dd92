import { isIP } from 'node:net';
import { parseHostPort } from '../net/address.js';
import type { RunRecord, SameNetworkRun } from '../result.js';

/** How far back a run looks for probes to its network: the longest lingering block seen (30 min, Flowseal #5156). */
export const LOOKBACK_MS = 30 * 60_000;
const MAX_LISTED = 10;
const MAX_REMEMBERED = 4096;

interface Remembered {
  id: string;
  run: SameNetworkRun;
  at: number;
  networks: Set<string>;
}

/**
 * Remembers recent runs by the networks they reached (/24 for IPv4, /48 for IPv6), so that each
 * record can say which probes to the same network ran in the 30 minutes before it and how they
 * ended: a block that lingers after one flow (a hosting network cut for 10-30 minutes) shows as a
 * failure that followed another probe there, not as a property of the target.
 */
export class SameNetworkLog {
  private readonly recent: Remembered[] = [];

  /** The earlier runs to this run's networks (newest first), then remembers this one. */
  before(run: RunRecord): SameNetworkRun[] {
    const at = Date.parse(run.startedAt);
    const networks = networksOf(run);
    while (this.recent.length > 0 && (at - this.recent[0]!.at > LOOKBACK_MS || this.recent.length > MAX_REMEMBERED)) this.recent.shift();
    const found: SameNetworkRun[] = [];
    for (let i = this.recent.length - 1; i >= 0 && found.length < MAX_LISTED; i--) {
      const r = this.recent[i]!;
      if (r.at > at || at - r.at > LOOKBACK_MS) continue;
      const shared = [...r.networks].find((n) => networks.has(n));
      if (shared) found.push({ ...r.run, network: shared });
    }
    if (networks.size > 0) {
      const udp = run.phases.some((p) => p.transport === 'udp' && !p.skipped);
      this.recent.push({
        id: run.id,
        at,
        networks,
        run: {
          service: run.service,
          target: run.target,
          startedAt: run.startedAt,
          transport: udp ? 'udp' : 'tcp',
          failure: run.failure,
          failedPhase: run.failedPhase,
          network: '',
        },
      });
    }
    return found;
  }
}

/** The networks a run's phases connected to (dns excluded: the resolver is not the target). */
function networksOf(run: RunRecord): Set<string> {
  const out = new Set<string>();
  for (const p of run.phases) {
    if (p.skipped || p.phase === 'dns') continue;
    const hp = parseHostPort(p.endpoint, 0);
    if (!hp) continue;
    const network = networkOf(hp.host);
    if (network) out.add(network);
  }
  return out;
}

/** 198.18.2.2 -> 198.18.2.0/24; 2001:db8:1:2::3 -> 2001:db8:1::/48. */
export function networkOf(address: string): string | null {
  const family = isIP(address);
  if (family === 4) return `${address.split('.').slice(0, 3).join('.')}.0/24`;
  if (family !== 6) return null;
  const [head = '', tail] = address.toLowerCase().split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return `${groups.slice(0, 3).map((g) => parseInt(g || '0', 16).toString(16)).join(':')}::/48`;
}
