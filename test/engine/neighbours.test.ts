import { describe, expect, it } from 'vitest';
import { SameNetworkLog, networkOf } from '../../src/engine/neighbours.js';
import { seededRandom, shuffled } from '../../src/engine/order.js';
import type { PhaseResult, RunRecord } from '../../src/result.js';

const T0 = Date.parse('2026-11-30T14:00:00Z');
function run(target: string, endpoint: string, atMin: number, transport: 'udp' | 'tcp', failure: RunRecord['failure'] = null): RunRecord {
  const phase: PhaseResult = { phase: transport === 'udp' ? 'stun' : 'tcp', endpoint, transport, startedAt: 0, durationMs: 1, ok: failure === null, failure, evidence: {} };
  return {
    schema: 2,
    id: `${target}-${atMin}`,
    software: { name: 'callprobe', version: 't' },
    vantage: { name: 'v' },
    service: 'telegram',
    target,
    path: 'calls',
    location: 'foreign',
    startedAt: new Date(T0 + atMin * 60_000).toISOString(),
    durationMs: 1,
    phases: [phase],
    failure,
    failedPhase: failure ? phase.phase : null,
  };
}

describe('probes to the same network before a run', () => {
  it('names the earlier probes to the same /24 within 30 minutes, newest first, with how they ended', () => {
    const log = new SameNetworkLog();
    expect(log.before(run('call-a', '91.108.9.100:1400', 0, 'udp', 'generic_timeout_error'))).toEqual([]);
    expect(log.before(run('dc2', '149.154.167.51:443', 1, 'tcp'))).toEqual([]);
    const later = log.before(run('reflector-a', '91.108.9.40:597', 5, 'udp', 'generic_timeout_error'));
    expect(later).toEqual([
      { service: 'telegram', target: 'call-a', startedAt: '2026-11-30T14:00:00.000Z', transport: 'udp', failure: 'generic_timeout_error', failedPhase: 'stun', network: '91.108.9.0/24' },
    ]);
    // 31 minutes after the first: out of the window; the reflector's run (at 5 min) is still in it.
    expect(log.before(run('call-b', '91.108.9.118:1400', 31, 'udp')).map((r) => r.target)).toEqual(['reflector-a']);
  });

  it('takes /48 for IPv6 and leaves names and the resolver out', () => {
    expect(networkOf('2001:67c:4e8:f002::a')).toBe('2001:67c:4e8::/48');
    expect(networkOf('2001:b28:f23d:f001::a')).toBe('2001:b28:f23d::/48');
    expect(networkOf('::1')).toBe('0:0:0::/48');
    expect(networkOf('198.18.2.2')).toBe('198.18.2.0/24');
    expect(networkOf('web.whatsapp.com')).toBeNull();
  });
});

describe('the seeded order', () => {
  it('is the same for the same seed and another for another', () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    expect(shuffled(items, seededRandom('a1b2'))).toEqual(shuffled(items, seededRandom('a1b2')));
    expect(shuffled(items, seededRandom('a1b2'))).not.toEqual(shuffled(items, seededRandom('c3d4')));
    expect([...shuffled(items, seededRandom('a1b2'))].sort((x, y) => x - y)).toEqual(items);
  });
});
