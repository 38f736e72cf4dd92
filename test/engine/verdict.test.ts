import { describe, expect, it } from 'vitest';
import type { RunRecord } from '../../src/result.js';
import { ControlBoard } from '../../src/engine/verdict.js';
import type { PhaseResult } from '../../src/result.js';

const T0 = Date.parse('2026-11-22T10:00:00Z');

function phase(name: string, ok: boolean, failure: string | null = null, skipped = false): PhaseResult {
  return { phase: name, endpoint: 'x', startedAt: 0, durationMs: 1, ok, failure: failure as PhaseResult['failure'], ...(skipped ? { skipped: true as const } : {}), evidence: {} };
}

function run(target: string, phases: PhaseResult[], at = T0, location: 'domestic' | 'foreign' = 'foreign'): RunRecord {
  const failed = phases.find((p) => !p.ok && !p.skipped);
  return {
    schema: 2,
    id: target,
    software: { name: 'callprobe', version: 't' },
    vantage: { name: 'v' },
    service: 's',
    target,
    path: 'messaging',
    location,
    startedAt: new Date(at).toISOString(),
    durationMs: 1,
    phases,
    failure: failed?.failure ?? null,
    failedPhase: failed?.phase ?? null,
  };
}

describe('verdicts against controls', () => {
  const okControl = run('domestic', [phase('dns', true), phase('tcp', true), phase('tls', true)]);
  const downControl = run('domestic', [phase('dns', true), phase('tcp', false, 'generic_timeout_error'), phase('tls', false, null, true)]);

  it('names the control that failed before reaching the phase (network down), instead of "no control"', () => {
    const board = new ControlBoard(600_000);
    board.record(okControl);
    // The next cycle: the control fails at dns; tcp and tls are never reached.
    const dnsDown = run('domestic', [phase('dns', false, 'generic_timeout_error'), phase('tcp', false, null, true), phase('tls', false, null, true)], T0 + 300_000);
    board.record(dnsDown);
    const r = board.judge(run('dc2', [phase('tcp', false, 'generic_timeout_error')], T0 + 301_000), false, T0 + 301_000);
    expect(r.verdict).toBe('error');
    expect(r.control).toEqual({
      target: 'domestic',
      phase: 'tcp',
      ok: false,
      startedAt: '2026-11-22T10:05:00.000Z',
      location: 'foreign',
      failure: 'generic_timeout_error',
      failedPhase: 'dns',
    });
  });

  it('is blocked when the control of the same phase succeeded', () => {
    const board = new ControlBoard(600_000);
    board.record(okControl);
    const r = board.judge(run('dc2', [phase('tcp', false, 'generic_timeout_error')]), false, T0 + 1000);
    expect(r.verdict).toBe('blocked');
    expect(r.control).toEqual({ target: 'domestic', phase: 'tcp', ok: true, startedAt: '2026-11-22T10:00:00.000Z', location: 'foreign' });
  });

  it('is error when the control of that phase failed too', () => {
    const board = new ControlBoard(600_000);
    board.record(downControl);
    const r = board.judge(run('dc2', [phase('tcp', false, 'generic_timeout_error')]), false, T0 + 1000);
    expect(r.verdict).toBe('error');
    expect(r.control).toMatchObject({ target: 'domestic', phase: 'tcp', ok: false });
  });

  it('never counts a skipped control phase', () => {
    const board = new ControlBoard(600_000);
    board.record(downControl);
    expect(board.judge(run('t', [phase('tls', false, 'connection_reset')]), false, T0).verdict).toBe('error');
  });

  it('maps a protocol phase to the control of the transport under it (websocket -> tls)', () => {
    const board = new ControlBoard(600_000);
    board.record(okControl);
    const r = board.judge(run('ws', [phase('tcp', true), phase('tls', true), phase('websocket', false, 'ws_bad_status')]), false, T0);
    expect(r.verdict).toBe('blocked');
    expect(r.control!.phase).toBe('tls');
  });

  it('is error when the control is stale, or there is none', () => {
    const board = new ControlBoard(600_000);
    board.record(okControl);
    expect(board.judge(run('dc2', [phase('tcp', false, 'connection_reset')]), false, T0 + 600_001).verdict).toBe('error');
    expect(new ControlBoard(1).judge(run('dc2', [phase('tcp', false, 'connection_reset')]), false, T0)).toMatchObject({ verdict: 'error', control: null });
  });

  it('is degraded for media codes and ok without failure', () => {
    const board = new ControlBoard(600_000);
    expect(board.judge(run('m', [phase('media', false, 'media_degraded')]), false, T0).verdict).toBe('degraded');
    expect(board.judge(run('m', [phase('tcp', true)]), false, T0)).toMatchObject({ verdict: 'ok', control: null });
  });

  it('says nothing about the network for our own refusals and bugs', () => {
    const board = new ControlBoard(600_000);
    board.record(okControl);
    expect(board.judge(run('x', [phase('tcp', false, 'policy_denied')]), false, T0).verdict).toBe('error');
    expect(board.judge(run('x', [phase('tcp', false, 'internal_error')]), false, T0).verdict).toBe('error');
    // A rejected TURN password is the volunteer's configuration, not censorship.
    expect(board.judge(run('x', [phase('turn', false, 'turn_unauthorized')]), false, T0).verdict).toBe('error');
  });

  it('gives a failing control the verdict error', () => {
    const board = new ControlBoard(600_000);
    expect(board.judge(downControl, true, T0).verdict).toBe('error');
  });
});

describe('verdicts per address family', () => {
  const v4Control = run('domestic', [phase('dns', true), { ...phase('tcp', true), endpoint: '198.18.2.2:443' }]);
  it('does not let an IPv4 control vouch for an IPv6 failure', () => {
    const board = new ControlBoard(600_000);
    board.record(v4Control);
    const v6 = board.judge(run('dc2-v6', [{ ...phase('tcp', false, 'network_unreachable'), endpoint: '[2001:67c:4e8:f002::a]:443' }]), false, T0);
    expect(v6).toMatchObject({ verdict: 'error', control: null });
    const v4 = board.judge(run('dc2', [{ ...phase('tcp', false, 'generic_timeout_error'), endpoint: '198.18.2.5:443' }]), false, T0);
    expect(v4).toMatchObject({ verdict: 'blocked', control: { target: 'domestic', phase: 'tcp' } });
  });
  it('lets an IPv6 control vouch for an IPv6 failure', () => {
    const board = new ControlBoard(600_000);
    board.record(run('domestic6', [{ ...phase('tcp', true), endpoint: '[2001:db8::53]:443' }]));
    const v6 = board.judge(run('dc2-v6', [{ ...phase('tcp', false, 'generic_timeout_error'), endpoint: '[2001:67c:4e8:f002::a]:443' }]), false, T0);
    expect(v6).toMatchObject({ verdict: 'blocked', control: { target: 'domestic6' } });
  });

  describe('scope: which controls passed', () => {
    const at = T0 + 1000;
    const tcpFails = run('dc2', [phase('tcp', false, 'generic_timeout_error')], at);
    const domestic = (ok: boolean) => run('yandex', [phase('tcp', ok, ok ? null : 'generic_timeout_error')], T0, 'domestic');
    const foreignCtl = (ok: boolean) => run('neutral', [phase('tcp', ok, ok ? null : 'generic_timeout_error')], T0, 'foreign');

    it('a foreign control passed: only this service fails (scope service)', () => {
      const board = new ControlBoard(600_000);
      board.record(domestic(true));
      board.record(foreignCtl(true));
      expect(board.judge(tcpFails, false, at)).toMatchObject({ verdict: 'blocked', scope: 'service', control: { target: 'neutral', location: 'foreign' } });
    });

    it('domestic controls pass, the foreign one fails too: everything foreign fails (scope foreign, an allowlist)', () => {
      const board = new ControlBoard(600_000);
      board.record(domestic(true));
      board.record(foreignCtl(false));
      expect(board.judge(tcpFails, false, at)).toMatchObject({ verdict: 'blocked', scope: 'foreign', control: { target: 'yandex', location: 'domestic', ok: true } });
    });

    it('only a domestic control at that phase: blocked, but a service block cannot be told from an allowlist', () => {
      const board = new ControlBoard(600_000);
      board.record(domestic(true));
      const r = board.judge(tcpFails, false, at);
      expect(r).toMatchObject({ verdict: 'blocked', scope: null });
      expect(r.reason).toBe('no foreign control covers tcp: a block of s cannot be told from one of everything foreign');
    });

    it('every control failed: the network is down (scope network, error)', () => {
      const board = new ControlBoard(600_000);
      board.record(domestic(false));
      board.record(foreignCtl(false));
      expect(board.judge(tcpFails, false, at)).toMatchObject({ verdict: 'error', scope: 'network', control: { ok: false } });
    });
  });

  describe('the known-responsive rule: silence from a target that may ignore strangers', () => {
    const at = T0 + 1000;
    const silent = run('call-1', [phase('stun', false, 'generic_timeout_error')], at);
    const board = new ControlBoard(600_000);
    board.record(run('stun-google', [phase('stun', true)], T0));

    it('is error, with the reason, while the target has never answered', () => {
      const r = board.judge(silent, false, at, { ambiguousSilence: true, knownToAnswer: false });
      expect(r).toMatchObject({ verdict: 'error', scope: null, control: { target: 'stun-google', ok: true } });
      expect(r.reason).toBe(
        'call-1 did not answer, but it has not answered this probe at this vantage before and its catalogue entry does not say it answers: its silence is no evidence of a block',
      );
    });

    it('is blocked once the target is known to answer', () => {
      expect(board.judge(silent, false, at, { ambiguousSilence: true, knownToAnswer: true })).toMatchObject({ verdict: 'blocked', scope: 'service' });
    });
  });
});
