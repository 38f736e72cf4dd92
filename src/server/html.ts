import type { AnswerState } from '../sinks/answer.js';
import { noVerdicts, stateOf, VERDICTS } from '../sinks/answer.js';
import type { Timeline } from '../sinks/history.js';
import { durationWords, utcMinute } from '../sinks/words.js';
import type { AssetPaths } from './assets.js';

/**
 * The pieces both pages are made of. Everything that comes from a catalogue, a config or a record
 * goes through `esc`; no inline script or style exists, so the Content-Security-Policy can forbid
 * both (a catalogue's target name can never become markup or code).
 */

export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A state in words and a symbol, never by colour alone. */
const STATE_LABEL: Readonly<Record<AnswerState, [string, string]>> = {
  ok: ['✓', 'ok'],
  degraded: ['!', 'degraded'],
  blocked: ['✕', 'blocked'],
  unknown: ['?', 'unknown'],
  untested: ['·', 'not measured yet'],
};

export function badge(state: AnswerState, label = STATE_LABEL[state][1]): string {
  return `<span class="badge s-${state}"><span aria-hidden="true">${STATE_LABEL[state][0]}</span> ${esc(label)}</span>`;
}

/** A verdict (error reads "unknown": nothing could be concluded) as a badge. */
export function verdictBadge(verdict: string | null): string {
  if (verdict === null) return badge('untested');
  const state: AnswerState = verdict === 'error' ? 'unknown' : (verdict as AnswerState);
  return badge(state, verdict === 'error' ? 'error' : verdict);
}

/** A time in UTC for the server's rendering; the page's script adds the reader's local time. */
export function time(iso: string): string {
  return `<time datetime="${esc(iso)}">${esc(utcMinute(iso))}</time>`;
}

/** "since <time>, for 3 h 20 min" (kept current by the page's script). */
export function sinceText(iso: string | null, now: number): string {
  if (!iso) return '';
  return `since ${time(iso)}, for <span data-for="${esc(iso)}">${esc(durationWords(now - Date.parse(iso)))}</span>`;
}

export function ago(iso: string, now: number): string {
  return `<span data-ago="${esc(iso)}">${esc(durationWords(now - Date.parse(iso)))} ago</span>`;
}

export interface PageShell {
  title: string;
  heading: string;
  meta: string;
  body: string;
  assets: AssetPaths;
  /** Data for the page's script (timelines), as JSON in a non-executed script element. */
  data: unknown;
}

export function page(p: PageShell): string {
  // JSON inside <script type="application/json">: "<" escaped so no "</script>" can close it.
  const data = JSON.stringify(p.data).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="60"><link rel="icon" href="data:,"><title>${esc(p.title)}</title>
<link rel="stylesheet" href="${p.assets.uplotCss}"><link rel="stylesheet" href="${p.assets.css}">
<script defer src="${p.assets.uplotJs}"></script><script defer src="${p.assets.js}"></script>
</head><body>
<header><h1>${p.heading}</h1><p class="meta">${p.meta}</p></header>
<main>
${p.body}
</main>
<script type="application/json" id="page-data">${data}</script>
</body></html>`;
}

/** The state codes the page's script draws: index into STATE_ORDER, or null for a bucket without runs. */
export const STATE_ORDER: readonly AnswerState[] = ['ok', 'degraded', 'blocked', 'unknown'];

export interface ChartData {
  startMs: number;
  bucketMs: number;
  states: Array<number | null>;
  runs: number[];
}

export function chartData(t: Timeline): ChartData {
  return {
    startMs: t.startMs,
    bucketMs: t.bucketMs,
    states: t.counts.map((c) => {
      const s = stateOf(c);
      return s === 'untested' ? null : STATE_ORDER.indexOf(s);
    }),
    runs: t.counts.map((c) => c.ok + c.degraded + c.blocked + c.error),
  };
}

const WINDOW_WORDS: Readonly<Record<Timeline['window'], string>> = { day: 'last 24 hours', week: 'last 7 days' };

/**
 * A timeline as a chart (drawn by the page's script with uPlot into the div) and its text
 * equivalent: an aria-label summary, and a table of the stretches of one state in <details>.
 */
export function timelineFigure(key: string, title: string, t: Timeline): string {
  const total = noVerdicts();
  for (const c of t.counts) for (const v of VERDICTS) total[v] += c[v];
  const runs = VERDICTS.reduce((n, v) => n + total[v], 0);
  const share = VERDICTS.filter((v) => total[v] > 0)
    .map((v) => `${Math.round((100 * total[v]) / runs)} % ${v}`)
    .join(', ');
  const summary = `${title}, ${WINDOW_WORDS[t.window]}: ${runs === 0 ? 'no runs' : `${runs} runs, ${share}`}`;
  const rows = stretches(t)
    .map((s) => `<tr><td>${time(new Date(s.fromMs).toISOString())}</td><td>${time(new Date(s.toMs).toISOString())}</td><td>${badge(s.state)}</td><td>${s.runs}</td></tr>`)
    .join('');
  return `<figure class="timeline">
<figcaption>${esc(title)} · ${WINDOW_WORDS[t.window]}</figcaption>
<div class="chart" role="img" aria-label="${esc(summary)}" data-chart="${esc(key)}"></div>
<details><summary>As a table</summary><table><thead><tr><th>from</th><th>to</th><th>state</th><th>runs</th></tr></thead><tbody>${rows || '<tr><td colspan="4">no runs in this window</td></tr>'}</tbody></table></details>
</figure>`;
}

/** Consecutive buckets of one state merged: "10:00 to 14:05 ok, 49 runs". Buckets without runs end a stretch. */
function stretches(t: Timeline): Array<{ fromMs: number; toMs: number; state: AnswerState; runs: number }> {
  const out: Array<{ fromMs: number; toMs: number; state: AnswerState; runs: number }> = [];
  t.counts.forEach((c, k) => {
    const state = stateOf(c);
    const fromMs = t.startMs + k * t.bucketMs;
    const runs = c.ok + c.degraded + c.blocked + c.error;
    const last = out.at(-1);
    if (state === 'untested') return;
    if (last && last.state === state && last.toMs === fromMs) {
      last.toMs = fromMs + t.bucketMs;
      last.runs += runs;
    } else out.push({ fromMs, toMs: fromMs + t.bucketMs, state, runs });
  });
  return out;
}
