import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { banners, serviceAnswers, stateOf, type TargetState } from '../../src/sinks/answer.js';
import { History, WINDOWS } from '../../src/sinks/history.js';
import { PeriodTracker } from '../../src/sinks/periods.js';
import { RecordWriter } from '../../src/sinks/records.js';
import type { Verdict } from '../../src/result.js';
import { result } from '../helpers/results.js';

const T0 = Date.parse('2026-11-30T12:00:00.000Z');
const MIN = 60_000;
const at = (m: number): string => new Date(T0 + m * MIN).toISOString();

describe('PeriodTracker', () => {
  it('errors fold into the period going on; a conclusive change starts a new one', () => {
    const p = new PeriodTracker();
    const runs: Verdict[] = ['error', 'ok', 'ok', 'error', 'blocked', 'error', 'error', 'blocked'];
    runs.forEach((v, i) => p.add(v, at(i * 5)));
    expect(p.periods).toEqual([
      { verdict: 'error', since: at(0), until: at(0), runs: 1, inconclusive: 1 },
      { verdict: 'ok', since: at(5), until: at(15), runs: 3, inconclusive: 1 },
      { verdict: 'blocked', since: at(20), until: at(35), runs: 4, inconclusive: 2 },
    ]);
    expect(p.errorSince).toBeNull();
    expect(p.sinceFor('blocked')).toBe(at(20));
    p.add('error', at(40));
    expect(p.sinceFor('error')).toBe(at(40));
  });
});

describe('stateOf and the answer lines', () => {
  it('judges a set of verdicts', () => {
    expect(stateOf({ ok: 0, degraded: 0, blocked: 0, error: 0 })).toBe('untested');
    expect(stateOf({ ok: 0, degraded: 0, blocked: 0, error: 3 })).toBe('unknown');
    expect(stateOf({ ok: 2, degraded: 0, blocked: 0, error: 1 })).toBe('ok');
    expect(stateOf({ ok: 0, degraded: 0, blocked: 2, error: 1 })).toBe('blocked');
    expect(stateOf({ ok: 1, degraded: 0, blocked: 1, error: 0 })).toBe('degraded');
    expect(stateOf({ ok: 0, degraded: 1, blocked: 0, error: 0 })).toBe('degraded');
  });

  const state = (over: Partial<TargetState> & { verdict?: Verdict | null }): TargetState => {
    const { verdict = null, ...rest } = over;
    return {
      service: 'telegram',
      target: 't',
      control: false,
      path: 'messaging',
      location: 'foreign',
      latest: verdict === null ? null : { verdict, startedAt: at(60), failure: verdict === 'ok' ? null : 'generic_timeout_error', failedPhase: verdict === 'ok' ? null : 'tcp', scope: verdict === 'blocked' ? 'foreign' : null },
      since: at(10),
      ...rest,
    };
  };

  it('one line per service and path, WhatsApp and Telegram first, calls before messaging; since from the deciding targets', () => {
    const answers = serviceAnswers([
      state({ service: 'max', verdict: 'ok' }),
      state({ target: 'a', verdict: 'blocked', since: at(10) }),
      state({ target: 'b', verdict: 'blocked', since: at(30) }),
      state({ target: 'c', path: 'calls', verdict: null }),
      state({ service: 'whatsapp', verdict: 'error', since: at(50) }),
      state({ service: 'control', control: true, verdict: 'ok' }),
    ]);
    expect(answers.map((a) => [a.title, a.state, a.since, a.text])).toEqual([
      ['WhatsApp messaging', 'unknown', at(50), 'nothing can be concluded: connecting fails: no answer (timed out) (generic_timeout_error), and the controls could not vouch for the network (1 of 1 target)'],
      ['Telegram calls', 'untested', null, 'not measured yet'],
      [
        'Telegram messaging',
        'blocked',
        at(30),
        'blocked: connecting fails: no answer (timed out) (generic_timeout_error), at 2 of 2 targets; everything foreign fails while domestic destinations work: an allowlist',
      ],
      ['Max messaging', 'ok', at(10), 'works: 1 of 1 target ok'],
    ]);
  });

  it('banners: every control failing, or domestic controls passing while foreign ones fail', () => {
    const down = [state({ control: true, service: 'control', verdict: 'error', since: at(40) }), state({ verdict: 'error' })];
    expect(banners(down).map((b) => [b.kind, b.since])).toEqual([['network-down', at(40)]]);
    const allowlist = [
      state({ control: true, service: 'control', target: 'home', location: 'domestic', verdict: 'ok' }),
      state({ control: true, service: 'control', target: 'abroad', verdict: 'error', since: at(45) }),
    ];
    expect(banners(allowlist).map((b) => [b.kind, b.since])).toEqual([['allowlist', at(45)]]);
    expect(banners([state({ control: true, service: 'control', verdict: 'ok' })])).toEqual([]);
  });
});

describe('History from the records and live results', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-history-'));
    const records = new RecordWriter({ dir, maxFileBytes: 1 << 20, maxTotalBytes: 1 << 24, queueLength: 1000, now: () => new Date(T0) });
    // dc2: ok for an hour, then blocked; a record of a target no longer planned; one 8 days old.
    for (let m = 0; m < 120; m += 5) records.write(result({ target: 'dc2', startedAt: at(m), verdict: m < 60 ? 'ok' : 'blocked' }));
    records.write(result({ target: 'gone', startedAt: at(0) }));
    await records.close();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads the records into buckets and periods, then follows live results; results during the load come after it', async () => {
    const history = new History();
    history.declare(['telegram/dc2', 'telegram/dc4']);
    const loading = history.load(dir, (r) => ({ ...r, vantage: { name: 'shown' } }), T0 + 125 * MIN);
    history.observe(result({ target: 'dc2', startedAt: at(125), verdict: 'blocked' }));
    expect(await loading).toMatchObject({ records: 24 });
    const dc2 = history.target('telegram/dc2')!;
    expect(dc2.periods.map((p) => [p.verdict, p.since, p.runs])).toEqual([
      ['ok', at(0), 12],
      ['blocked', at(60), 13],
    ]);
    expect(dc2.since).toBe(at(60));
    expect(dc2.latest!.startedAt).toBe(at(125));
    // The loaded results kept whole went through the filter; the live one was filtered by its sender.
    expect(dc2.recent.map((r) => r.vantage.name)).toEqual(['shown', 'shown', 'shown', 'shown', 'lab']);
    expect(dc2.points).toHaveLength(25);
    const day = history.timeline(['telegram/dc2', 'telegram/dc4'], WINDOWS[0]!, T0 + 125 * MIN);
    expect(day.startMs).toBe(T0 + 125 * MIN - 287 * 5 * MIN);
    // The last 26 five-minute buckets: 12 ok, 12 blocked, the empty one at 120 min, the live run at 125.
    const lastHours = day.counts.slice(-26);
    expect(lastHours.map((c) => (c.ok ? 'o' : c.blocked ? 'b' : '-')).join('')).toBe('oooooooooooobbbbbbbbbbbb-b');
    const week = history.timeline(['telegram/dc2'], WINDOWS[1]!, T0 + 125 * MIN);
    expect(week.counts.slice(-3)).toEqual([
      { ok: 12, degraded: 0, blocked: 0, error: 0 },
      { ok: 0, degraded: 0, blocked: 12, error: 0 },
      { ok: 0, degraded: 0, blocked: 1, error: 0 },
    ]);
    expect(history.target('telegram/dc4')).toMatchObject({ latest: null, since: null, periods: [] });
    expect(history.target('telegram/gone')).toBeNull();
  });
});
