import { parseCidr, type Cidr } from '../net/cidr.js';

/**
 * The one list of special-purpose ranges: the default safety deny list (docs/architecture.md#safety-guard)
 * and the bogon ranges of `dns_bogon_error` are this list, so a poisoned DNS answer can never make a
 * volunteer's host probe its own LAN. Sources: IANA IPv4/IPv6 Special-Purpose Address Registries
 * (RFC 6890), and OONI probe-cli internal/netxlite/bogon.go for what counts as a bogon answer.
 */
export const SPECIAL_PURPOSE: ReadonlyArray<{ cidr: string; name: string }> = [
  { cidr: '0.0.0.0/8', name: 'this-network' }, // RFC 791 / RFC 6890: unspecified, "this host"
  { cidr: '10.0.0.0/8', name: 'private' }, // RFC 1918
  { cidr: '100.64.0.0/10', name: 'cgnat' }, // RFC 6598 shared address space
  { cidr: '127.0.0.0/8', name: 'loopback' }, // RFC 1122 §3.2.1.3
  { cidr: '169.254.0.0/16', name: 'link-local' }, // RFC 3927
  { cidr: '172.16.0.0/12', name: 'private' }, // RFC 1918
  { cidr: '192.0.0.0/24', name: 'ietf-protocol' }, // RFC 6890 §2.2.2
  { cidr: '192.0.2.0/24', name: 'documentation' }, // RFC 5737 TEST-NET-1
  { cidr: '192.168.0.0/16', name: 'private' }, // RFC 1918
  { cidr: '198.18.0.0/15', name: 'benchmarking' }, // RFC 2544: the callprobe lab's range
  { cidr: '198.51.100.0/24', name: 'documentation' }, // RFC 5737 TEST-NET-2
  { cidr: '203.0.113.0/24', name: 'documentation' }, // RFC 5737 TEST-NET-3
  { cidr: '224.0.0.0/4', name: 'multicast' }, // RFC 5771
  { cidr: '240.0.0.0/4', name: 'reserved' }, // RFC 1112 §4, includes 255.255.255.255 broadcast
  { cidr: '::/128', name: 'unspecified' }, // RFC 4291 §2.5.2
  { cidr: '::1/128', name: 'loopback' }, // RFC 4291 §2.5.3
  { cidr: '100::/64', name: 'discard' }, // RFC 6666
  { cidr: '2001:db8::/32', name: 'documentation' }, // RFC 3849
  { cidr: 'fc00::/7', name: 'private' }, // RFC 4193 unique local
  { cidr: 'fe80::/10', name: 'link-local' }, // RFC 4291 §2.5.6
  { cidr: 'fec0::/10', name: 'site-local' }, // RFC 3879 (deprecated, still routed by some stacks)
  { cidr: 'ff00::/8', name: 'multicast' }, // RFC 4291 §2.7
];

export interface NamedCidr {
  cidr: Cidr;
  name: string;
}

export const SPECIAL_PURPOSE_CIDRS: ReadonlyArray<NamedCidr> = SPECIAL_PURPOSE.map((r) => ({
  cidr: parseCidr(r.cidr),
  name: r.name,
}));
