import type { PhaseRegistry } from '../phases/types.js';
import { scanRecords } from '../sinks/records.js';
import { duration } from '../units.js';
import { ReportBuilder, type Report } from './aggregate.js';

export { formatReport, REPORT_FORMATS, type ReportFormat } from './format.js';
export type { Report, TargetReport } from './aggregate.js';

/** `--since`: a duration back from now ("7d", "36h") or an ISO 8601 time. Null when it is neither. */
export function parseSince(text: string, now = Date.now()): Date | null {
  const back = duration.safeParse(text);
  if (back.success && /[a-z]$/.test(text)) return new Date(now - back.data);
  const at = /^\d{4}-\d\d-\d\d/.test(text) ? new Date(text) : null;
  return at && !Number.isNaN(at.getTime()) ? at : null;
}

/** The report of the records in `recordsDir` since `since`, for some services or all (read asynchronously). */
export async function reportFromRecords(recordsDir: string, opts: { since: Date; services: string[]; phases: PhaseRegistry }): Promise<Report> {
  const builder = new ReportBuilder(opts.phases);
  await scanRecords(recordsDir, opts.since, (r) => {
    if (opts.services.length === 0 || opts.services.includes(r.service)) builder.add(r);
  });
  return builder.finish();
}
