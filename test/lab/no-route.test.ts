import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import { createLab, describeLab, runOnceInLab, type Lab } from './index.js';

/**
 * A vantage whose route to the outside is gone (an IPv6 target on a host without IPv6 is the same
 * case): every phase must say `network_unreachable` at once, counting only what really left,
 * instead of an `internal_error` (stun) or a timeout that counts queries never sent (dns).
 */
describeLab('UDP and TCP with no route', () => {
  let lab: Lab;
  let get: (target: string) => ProbeResult;

  beforeAll(async () => {
    lab = await createLab();
    // Only the client's own link is left: 198.18.2.2 (server, resolver) has no route.
    execFileSync('ip', ['-n', lab.ns('client'), 'route', 'del', 'default']);
    const run = await runOnceInLab(lab, {
      catalogues: {
        'unreachable.yaml':
          'service: lab\ntargets:\n' +
          '  - name: stun\n    host: 198.18.2.2\n    port: 3478\n    phaseTimeout: 45s\n    phases: [stun]\n' +
          '  - name: dns\n    host: unreachable.lab.test\n    phases: [dns]\n' +
          '  - name: tcp\n    host: 198.18.2.2\n    port: 443\n    phases: [tcp]\n',
      },
      phaseTimeout: '10s',
    });
    get = run.get;
  }, 60_000);
  afterAll(() => lab?.destroy());

  it('stun: network_unreachable at the first send, nothing counted as sent', () => {
    const r = get('stun');
    expect(r).toMatchObject({ failure: 'network_unreachable', failedPhase: 'stun' });
    expect(r.phases[0]!.evidence).toMatchObject({ error: 'ENETUNREACH', failedOperation: 'connect', bytesSent: 0, datagramsSent: 0 });
    // Failed before the first request, not after the 39.5 s schedule.
    expect(r.phases[0]!.evidence.attempts).toBeUndefined();
  });

  it('dns: network_unreachable at the first query, no query counted as sent', () => {
    const r = get('dns');
    expect(r).toMatchObject({ failure: 'network_unreachable', failedPhase: 'dns' });
    expect(r.phases[0]!.evidence).toMatchObject({ error: 'ENETUNREACH', failedOperation: 'write', bytesSent: 0, datagramsSent: 0 });
  });

  it('tcp: network_unreachable, as before', () => {
    expect(get('tcp')).toMatchObject({ failure: 'network_unreachable', failedPhase: 'tcp' });
  });
});
