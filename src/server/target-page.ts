import { roundMs } from '../evidence.js';
import { WINDOWS } from '../sinks/history.js';
import { answerTitle, failingStep, scopeWords, serviceName, stepWords } from '../sinks/words.js';
import type { PhaseResult } from '../result.js';
import type { PageContext } from './page.js';
import { ago, chartData, esc, page, sinceText, time, timelineFigure, verdictBadge, type ChartData } from './html.js';

/**
 * One target in detail: what it stands for, its verdict and since when, its timelines, the periods
 * of one verdict, the last run phase by phase with timings and evidence, and the runs before it.
 * Null when the id names no planned target.
 */
export function renderTargetPage(c: PageContext, id: string): string | null {
  const t = c.board.get(id);
  if (!t) return null;
  const l = t.latest;
  const what = t.control ? `a ${t.location} control` : `${answerTitle(t.service, t.path)} (${t.location})`;
  const charts: Record<string, ChartData> = {};
  const figures = WINDOWS.map((w) => {
    const timeline = c.board.history.timeline([t.id], w, c.now);
    charts[w.name] = chartData(timeline);
    return timelineFigure(w.name, t.target, timeline);
  }).join('\n');
  const control = l?.control
    ? `<p>The verdict leaned on the control <b>${esc(l.control.target)}</b> at ${esc(l.control.phase)}: ${l.control.ok ? 'it worked' : `it failed too${l.control.failure ? ` (${esc(failingStep(l.control.failedPhase ?? null, l.control.failure))})` : ''}`}, ${time(l.control.startedAt)}.</p>`
    : '';
  const current = l
    ? `<p>${verdictBadge(l.verdict)} ${sinceText(t.since, c.now)}${l.failure ? ` · ${esc(failingStep(l.failedPhase, l.failure))}` : ''}</p>
${l.scope ? `<p>${esc(scopeWords(l.scope))}</p>` : ''}${l.reason ? `<p>${esc(l.reason)}</p>` : ''}${control}`
    : '<p>Not run yet.</p>';
  const periods = [...t.record.periods]
    .reverse()
    .map((p) => `<tr><td>${verdictBadge(p.verdict)}</td><td>${time(p.since)}</td><td>${time(p.until)}</td><td class="num">${p.runs}</td><td class="num">${p.inconclusive}</td></tr>`)
    .join('');
  const previous = [...t.history]
    .reverse()
    .map((h) => `<tr><td>${time(h.startedAt)}</td><td>${verdictBadge(h.verdict)}</td><td>${esc(failingStep(h.failedPhase, h.failure))}</td><td class="num">${roundMs(h.durationMs).toFixed(1)}</td></tr>`)
    .join('');
  const body = `<p><a href="/">← all services</a></p>
<p><code>${esc(t.endpoint)}</code> · stands for ${esc(what)} · phases ${esc(t.phases.join(' › '))}</p>
<section aria-labelledby="now-h"><h2 id="now-h">Now</h2>${current}</section>
<section aria-labelledby="tl-h"><h2 id="tl-h">Timelines</h2><div class="timelines">${figures}</div></section>
<section aria-labelledby="periods-h"><h2 id="periods-h">Periods</h2>
<table><thead><tr><th>verdict</th><th>from</th><th>last run</th><th>runs</th><th>inconclusive</th></tr></thead><tbody>${periods || '<tr><td colspan="5">none yet</td></tr>'}</tbody></table></section>
<section aria-labelledby="last-h"><h2 id="last-h">Last run</h2>${l ? `<p>${time(l.startedAt)} (${ago(l.startedAt, c.now)}), ${roundMs(l.durationMs).toFixed(1)} ms</p>${phaseTable(l.phases)}` : '<p>Not run yet.</p>'}</section>
<section aria-labelledby="prev-h"><h2 id="prev-h">Previous runs</h2>
<table><thead><tr><th>started</th><th>verdict</th><th>what failed</th><th>ms</th></tr></thead><tbody>${previous || '<tr><td colspan="4">none yet</td></tr>'}</tbody></table></section>`;
  return page({
    title: `${t.id} · callprobe · ${c.vantage}`,
    heading: `${esc(serviceName(t.service))} · ${esc(t.target)}`,
    meta: `callprobe · ${esc(c.vantage)} · <a href="/api/results?limit=100">/api/results</a>`,
    body,
    assets: c.assets,
    data: { charts },
  });
}

function phaseTable(phases: readonly PhaseResult[]): string {
  const rows = phases
    .map((p) => {
      const result = p.skipped ? '<span class="muted">skipped</span>' : p.ok ? 'ok' : esc(failingStep(null, p.failure));
      const evidence = Object.keys(p.evidence).length > 0 ? `<details><summary>evidence</summary><pre>${esc(JSON.stringify(p.evidence, null, 2))}</pre></details>` : '';
      return `<tr><td><b>${esc(p.phase)}</b><br><span class="muted">${esc(stepWords(p.phase))}</span></td><td><code>${esc(p.endpoint)}</code>${p.transport ? ` ${esc(p.transport)}` : ''}</td><td class="num">${p.skipped ? '' : roundMs(p.startedAt).toFixed(1)}</td><td class="num">${p.skipped ? '' : roundMs(p.durationMs).toFixed(1)}</td><td>${result}${evidence}</td></tr>`;
    })
    .join('');
  return `<table><thead><tr><th>phase</th><th>endpoint</th><th>at ms</th><th>took ms</th><th>result</th></tr></thead><tbody>${rows}</tbody></table>`;
}

