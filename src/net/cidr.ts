import { BlockList, isIP } from 'node:net';

/** A parsed CIDR prefix that can test addresses; IPv4-mapped IPv6 addresses are tested as IPv4. */
export interface Cidr {
  readonly text: string;
  readonly family: 4 | 6;
  readonly prefix: number;
  contains(address: string): boolean;
}

export class CidrError extends Error {}

export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const base = slash === -1 ? text : text.slice(0, slash);
  const family = isIP(base);
  if (family !== 4 && family !== 6) throw new CidrError(`not an IP prefix: ${JSON.stringify(text)}`);
  const max = family === 4 ? 32 : 128;
  const prefixText = slash === -1 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) {
    throw new CidrError(`prefix length must be 0-${max}: ${JSON.stringify(text)}`);
  }
  const prefix = Number(prefixText);
  const list = new BlockList();
  list.addSubnet(base, prefix, family === 4 ? 'ipv4' : 'ipv6');
  return {
    text: `${base}/${prefix}`,
    family,
    prefix,
    contains(address: string): boolean {
      const norm = normalizeAddress(address);
      if (norm === null) return false;
      const f = isIP(norm);
      if (f !== family) return false;
      return list.check(norm, f === 4 ? 'ipv4' : 'ipv6');
    },
  };
}

/**
 * The address a packet would really go to: IPv4-mapped IPv6 (::ffff:a.b.c.d, RFC 4291 §2.5.5.2)
 * reaches the IPv4 host, so it is judged as that IPv4 address. Returns null for non-addresses.
 */
export function normalizeAddress(address: string): string | null {
  const unbracketed = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const family = isIP(unbracketed);
  if (family === 0) return null;
  if (family === 4) return unbracketed;
  const lower = unbracketed.toLowerCase();
  const dotted = /^(?:0{0,4}:){0,5}:?ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(lower);
  if (dotted && isIP(dotted[1]!) === 4) return dotted[1]!;
  const hex = /^(?:0{0,4}:){0,5}:?ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return lower;
}

/**
 * IPv6 forms that carry an IPv4 destination inside them and are routed to it by translators:
 * NAT64 64:ff9b::/96 (RFC 6052) and 6to4 2002::/16 (RFC 3056). Returns that IPv4 address.
 */
export function embeddedIpv4(address: string): string | null {
  const norm = normalizeAddress(address);
  if (norm === null || isIP(norm) !== 6) return null;
  const groups = expandIpv6(norm);
  if (groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0)) {
    return `${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`;
  }
  if (groups[0] === 0x2002) {
    return `${groups[1]! >> 8}.${groups[1]! & 255}.${groups[2]! >> 8}.${groups[2]! & 255}`;
  }
  return null;
}

function expandIpv6(address: string): number[] {
  let text = address;
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : new Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...zeros, ...t].map((g) => parseInt(g, 16));
}

/** localhost, 127.0.0.0/8 or ::1 (also IPv4-mapped): a name is never taken for an address. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const norm = normalizeAddress(host);
  return norm !== null && (norm === '::1' || (isIP(norm) === 4 && norm.startsWith('127.')));
}
