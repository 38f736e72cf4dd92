import { isIP } from 'node:net';
import { z } from 'zod';

/** `host:port`, with IPv6 literals bracketed. */
export function formatEndpoint(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Whether a host is an IP literal (IPv6 with or without brackets), not a name to resolve. */
export function isIpLiteral(host: string): boolean {
  return isIP(host.replace(/^\[|\]$/g, '')) !== 0;
}

/** host:port with an IPv4 literal, a bracketed IPv6 literal or a name. */
export function parseHostPort(text: string, defaultPort: number): { host: string; port: number } | null {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) return { host: v6[1]!, port: v6[2] ? Number(v6[2]) : defaultPort };
  const colon = text.lastIndexOf(':');
  if (colon !== -1 && text.indexOf(':') === colon) {
    const port = Number(text.slice(colon + 1));
    if (!Number.isInteger(port) || port < 0 || port > 65535) return null;
    return { host: text.slice(0, colon), port };
  }
  if (text.includes(':')) return { host: text, port: defaultPort }; // a bare IPv6 literal
  return text.length > 0 ? { host: text, port: defaultPort } : null;
}

/** IP:PORT with an IP literal (IPv6 in brackets) and an explicit port: no name to resolve. */
export const ipPortSchema = z.string().superRefine((text, ctx) => {
  const hp = parseHostPort(text, 0);
  if (!hp || isIP(hp.host) === 0 || !Number.isInteger(hp.port) || hp.port < 0 || hp.port > 65535 || !/:\d+$/.test(text)) {
    ctx.addIssue({ code: 'custom', message: 'must be IP:PORT (an IP literal, IPv6 in brackets, and a port)' });
  }
});
