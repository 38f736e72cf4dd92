import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

/** The first `nameserver` of resolv.conf (resolv.conf(5)): the resolver a user of this host gets. */
export function systemResolver(file = '/etc/resolv.conf'): string | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && isIP(m[1]!.split('%')[0]!) !== 0) return m[1]!.split('%')[0]!;
  }
  return null;
}
