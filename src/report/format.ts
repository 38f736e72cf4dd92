import type { Period } from '../sinks/periods.js';
import { answerTitle, durationWords, utcMinute } from '../sinks/words.js';
import type { Report, TargetReport } from './aggregate.js';

export const REPORT_FORMATS = ['text', 'json', 'csv'] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

export function formatReport(report: Report, format: ReportFormat): string {
  switch (format) {
    case 'json':
      return JSON.stringify(report, null, 2) + '\n';
    case 'csv':
      return reportCsv(report);
    case 'text':
      return reportText(report);
  }
}

/** "blocked since 2026-11-30 14:05 UTC, 212 runs (3 inconclusive)"; earlier periods say until when. */
function periodText(p: Period, last: boolean): string {
  const runs = `${p.runs} run${p.runs === 1 ? '' : 's'}${p.inconclusive ? ` (${p.inconclusive} inconclusive)` : ''}`;
  return last ? `${p.verdict} since ${utcMinute(p.since)}, ${runs}` : `${p.verdict} ${utcMinute(p.since)} to ${utcMinute(p.until)}, ${runs}`;
}

function failuresText(t: TargetReport): string {
  return t.failures.map((f) => `${f.phase} ${f.code} ${f.runs}`).join('; ');
}

function mediansText(t: TargetReport): string {
  return t.medianMs.map((m) => `${m.phase} ${m.ms.toFixed(1)}`).join('; ');
}

function cutoffsText(t: TargetReport): string {
  return t.cutoffs.map((c) => `${c.shape} after ${c.value} ${c.what} ×${c.runs}`).join('; ');
}

/** Fixed-width columns: pasted into a message in a monospace block, it stays a table. */
function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd());
}

function reportText(report: Report): string {
  if (report.runs === 0) return 'callprobe report: no runs in the records for this window\n';
  const span = durationWords(Date.parse(report.to!) - Date.parse(report.from!));
  const head = `callprobe report · vantage ${report.vantages.join(', ')} · ${utcMinute(report.from!)} to ${utcMinute(report.to!)} (${span}) · ${report.runs} runs of ${report.targets.length} targets`;
  const rows = [
    ['target', 'stands for', 'now', 'since', 'runs since', 'all runs', 'ok', 'degraded', 'blocked', 'error', 'most common failure'],
    ...report.targets.map((t) => {
      const now = t.periods.at(-1)!;
      const top = t.failures[0];
      return [
        `${t.service}/${t.target}`,
        t.service === 'control' ? `control, ${t.location}` : answerTitle(t.service, t.path),
        now.verdict,
        utcMinute(now.since),
        String(now.runs),
        String(t.runs),
        String(t.verdicts.ok),
        String(t.verdicts.degraded),
        String(t.verdicts.blocked),
        String(t.verdicts.error),
        top ? `${top.phase} ${top.code} (${top.runs})` : '',
      ];
    }),
  ];
  const details = report.targets.map((t) =>
    [
      `${t.service}/${t.target} (${t.path}, ${t.location})`,
      `  verdict    ${t.periods.map((p, i) => periodText(p, i === t.periods.length - 1)).join('; ')}`,
      `  failures   ${failuresText(t) || 'none'}`,
      `  median ms  ${mediansText(t) || 'none'}`,
      `  cut-offs   ${cutoffsText(t) || 'none'}`,
    ].join('\n'),
  );
  return [head, '', ...table(rows), '', details.join('\n\n'), ''].join('\n');
}

const CSV_COLUMNS = [
  'service',
  'target',
  'path',
  'location',
  'runs',
  'ok',
  'degraded',
  'blocked',
  'error',
  'verdict',
  'since',
  'period_runs',
  'periods',
  'failures',
  'median_ms',
  'cutoffs',
] as const;

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. */
function csvField(value: string | number): string {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One row per target; the lists (failures, medians, cut-offs) as "a b n; ..." cells, as in the text. */
function reportCsv(report: Report): string {
  const rows = report.targets.map((t) => {
    const now = t.periods.at(-1)!;
    return [
      t.service,
      t.target,
      t.path,
      t.location,
      t.runs,
      t.verdicts.ok,
      t.verdicts.degraded,
      t.verdicts.blocked,
      t.verdicts.error,
      now.verdict,
      now.since,
      now.runs,
      t.periods.length,
      failuresText(t),
      mediansText(t),
      cutoffsText(t),
    ];
  });
  return [CSV_COLUMNS.join(','), ...rows.map((r) => r.map(csvField).join(','))].join('\r\n') + '\r\n';
}
