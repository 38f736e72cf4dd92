import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PHASES } from '../../src/phases/index.js';
import { formatReport, parseSince, reportFromRecords, REPORT_FORMATS } from '../../src/report/index.js';

const ROOT = join(import.meta.dirname, '..', '..');
/** Fixed records: a day's file in the window and an older one outside it. */
export const RECORDS = join(ROOT, 'test', 'fixtures', 'records');
const EXPECTED = join(ROOT, 'test', 'fixtures', 'report');
const SINCE = new Date('2026-11-29T00:00:00.000Z');

describe('callprobe report on fixed records', () => {
  for (const format of REPORT_FORMATS) {
    it(`${format}: exactly the expected output`, async () => {
      const report = await reportFromRecords(RECORDS, { since: SINCE, services: [], phases: PHASES });
      expect(formatReport(report, format)).toBe(readFileSync(join(EXPECTED, `expected.${format}`), 'utf8'));
    });
  }

  it('--service keeps only those services; the window leaves out older records', async () => {
    const report = await reportFromRecords(RECORDS, { since: SINCE, services: ['telegram'], phases: PHASES });
    expect(report.targets.map((t) => `${t.service}/${t.target}`)).toEqual(['telegram/dc2', 'telegram/stream']);
    expect(report.targets[0]!.runs).toBe(8);
    const older = await reportFromRecords(RECORDS, { since: new Date('2026-11-28T00:00:00.000Z'), services: ['telegram'], phases: PHASES });
    expect(older.targets[0]!.runs).toBe(9);
  });

  it('--since takes a duration back from now or an ISO 8601 time', () => {
    const now = Date.parse('2026-11-30T12:00:00.000Z');
    expect(parseSince('7d', now)!.toISOString()).toBe('2026-11-23T12:00:00.000Z');
    expect(parseSince('36h', now)!.toISOString()).toBe('2026-11-29T00:00:00.000Z');
    expect(parseSince('2026-11-29T10:00:00Z', now)!.toISOString()).toBe('2026-11-29T10:00:00.000Z');
    expect(parseSince('2026-11-29', now)!.toISOString()).toBe('2026-11-29T00:00:00.000Z');
    expect(parseSince('yesterday', now)).toBeNull();
    expect(parseSince('7', now)).toBeNull();
  });
});
