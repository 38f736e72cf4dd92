import { describe, expect, it } from 'vitest';
import { SafetyGuard } from '../../src/engine/guard.js';
import { ProbeFailure } from '../../src/failure.js';
import { embeddedIpv4, normalizeAddress } from '../../src/net/cidr.js';

const LAB = ['127.0.0.0/8', '::1/128', '198.18.0.0/15'];

describe('SafetyGuard with the default policy (the public internet)', () => {
  const guard = new SafetyGuard();
  it.each([
    ['10.1.2.3', 'special-purpose 10.0.0.0/8 (private)'],
    ['172.20.0.1', 'special-purpose 172.16.0.0/12 (private)'],
    ['192.168.1.1', 'special-purpose 192.168.0.0/16 (private)'],
    ['127.0.0.1', 'special-purpose 127.0.0.0/8 (loopback)'],
    ['169.254.169.254', 'special-purpose 169.254.0.0/16 (link-local)'],
    ['100.64.0.1', 'special-purpose 100.64.0.0/10 (cgnat)'],
    ['224.0.0.251', 'special-purpose 224.0.0.0/4 (multicast)'],
    ['0.0.0.0', 'special-purpose 0.0.0.0/8 (this-network)'],
    ['192.0.2.7', 'special-purpose 192.0.2.0/24 (documentation)'],
    ['198.18.1.2', 'special-purpose 198.18.0.0/15 (benchmarking)'],
    ['::1', 'special-purpose ::1/128 (loopback)'],
    ['fe80::1', 'special-purpose fe80::/10 (link-local)'],
    ['fd00::5', 'special-purpose fc00::/7 (private)'],
    ['2001:db8::1', 'special-purpose 2001:db8::/32 (documentation)'],
    ['::ffff:10.0.0.1', 'special-purpose 10.0.0.0/8 (private)'],
    ['::ffff:7f00:1', 'special-purpose 127.0.0.0/8 (loopback)'],
    ['[::ffff:192.168.0.1]', 'special-purpose 192.168.0.0/16 (private)'],
    ['64:ff9b::a00:1', 'special-purpose 10.0.0.0/8 (private) (embedded in 64:ff9b::a00:1)'],
    ['2002:c0a8:0101::1', 'special-purpose 192.168.0.0/16 (private) (embedded in 2002:c0a8:0101::1)'],
  ])('denies %s as a bogon (%s)', (address, rule) => {
    expect(guard.check(address)).toEqual({ allowed: false, rule, bogon: true });
  });

  it('allows public addresses', () => {
    expect(guard.check('149.154.167.51')).toEqual({ allowed: true, rule: 'public internet', bogon: false });
    expect(guard.check('2001:67c:4e8:f002::a')).toEqual({ allowed: true, rule: 'public internet', bogon: false });
  });

  it('refuses what is not an address', () => {
    expect(guard.check('example.com').allowed).toBe(false);
  });

  it('throws policy_denied with the rule as evidence', () => {
    let thrown: unknown;
    try {
      guard.assert('10.0.0.1');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ProbeFailure);
    expect((thrown as ProbeFailure).code).toBe('policy_denied');
    expect((thrown as ProbeFailure).evidence).toEqual({ deniedAddress: '10.0.0.1', rule: 'special-purpose 10.0.0.0/8 (private)' });
  });
});

describe('SafetyGuard with the lab allowlist', () => {
  const guard = new SafetyGuard({ allow: LAB });
  it('opens exactly the allowed special-purpose ranges, which are then not bogons', () => {
    expect(guard.check('198.18.2.2')).toEqual({ allowed: true, rule: 'allow 198.18.0.0/15', bogon: false });
    expect(guard.check('127.0.0.1')).toEqual({ allowed: true, rule: 'allow 127.0.0.0/8', bogon: false });
    expect(guard.check('::1')).toEqual({ allowed: true, rule: 'allow ::1/128', bogon: false });
    expect(guard.check('::ffff:127.0.0.1')).toEqual({ allowed: true, rule: 'allow 127.0.0.0/8', bogon: false });
  });
  it('denies public addresses outside the allowlist', () => {
    expect(guard.check('149.154.167.51')).toEqual({ allowed: false, rule: 'not in allow', bogon: false });
  });
  it('still treats other special-purpose ranges as bogons', () => {
    expect(guard.check('10.0.0.1').bogon).toBe(true);
  });
});

describe('SafetyGuard rule order', () => {
  it('never lets a broad allow open a special-purpose range', () => {
    const guard = new SafetyGuard({ allow: ['0.0.0.0/0', '::/0'] });
    expect(guard.check('10.0.0.1').allowed).toBe(false);
    expect(guard.check('8.8.8.8').allowed).toBe(true);
  });
  it('lets deny win over allow', () => {
    const guard = new SafetyGuard({ allow: LAB, deny: ['198.18.2.0/24'] });
    expect(guard.check('198.18.2.2')).toEqual({ allowed: false, rule: 'deny 198.18.2.0/24', bogon: false });
    expect(guard.check('198.18.1.1').allowed).toBe(true);
  });
  it('trusts a configured resolver as a DNS server only', () => {
    const guard = new SafetyGuard({ resolvers: ['127.0.0.53'] });
    expect(guard.check('127.0.0.53', 'dns-server')).toEqual({ allowed: true, rule: 'configured resolver', bogon: false });
    expect(guard.check('127.0.0.53', 'probe').allowed).toBe(false);
  });
});

describe('address forms', () => {
  it('normalizes IPv4-mapped IPv6 in dotted and hex forms', () => {
    expect(normalizeAddress('::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(normalizeAddress('::FFFF:0102:0304')).toBe('1.2.3.4');
    expect(normalizeAddress('0:0:0:0:0:ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(normalizeAddress('2001:DB8::1')).toBe('2001:db8::1');
    expect(normalizeAddress('nope')).toBeNull();
  });
  it('extracts IPv4 from NAT64 and 6to4', () => {
    expect(embeddedIpv4('64:ff9b::1.2.3.4')).toBe('1.2.3.4');
    expect(embeddedIpv4('2002:0102:0304::')).toBe('1.2.3.4');
    expect(embeddedIpv4('2001:db8::1')).toBeNull();
  });
});

describe('isLoopbackHost', () => {
  it('accepts localhost and loopback literals, never names that look like them', async () => {
    const { isLoopbackHost } = await import('../../src/net/cidr.js');
    expect(['localhost', '127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1'].map(isLoopbackHost)).toEqual([true, true, true, true, true]);
    expect(['127.example.com', '0.0.0.0', '198.18.1.2', 'localhost.example'].map(isLoopbackHost)).toEqual([false, false, false, false]);
  });
});
