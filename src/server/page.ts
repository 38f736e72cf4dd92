import { banners, serviceAnswers, type Banner, type ServiceAnswer } from '../sinks/answer.js';
import { WINDOWS } from '../sinks/history.js';
import type { StatusBoard, TargetStatus } from '../sinks/status.js';
import { answerTitle, failingStep, serviceName } from '../sinks/words.js';
import type { AssetPaths } from './assets.js';
import { ago, badge, chartData, esc, page, sinceText, timelineFigure, verdictBadge, type ChartData } from './html.js';

export interface PageContext {
  vantage: string;
  version: string;
  startedAt: string;
  board: StatusBoard;
  assets: AssetPaths;
  now: number;
}

/**
 * The status page: the answer first (one line per service and path, banners above them), then the
 * timelines of the last 24 hours and 7 days, a legend, and every target with a link to its detail
 * view. Readable without JavaScript; the page's script draws the charts and adds local times.
 */
export function renderStatusPage(c: PageContext): string {
  const states = c.board.states();
  const answers = serviceAnswers(states);
  const charts: Record<string, ChartData> = {};
  const figures = answers
    .map((a) => {
      const ids = c.board.list().filter((t) => !t.control && t.service === a.service && t.path === a.path).map((t) => t.id);
      return WINDOWS.map((w) => {
        const key = `${a.service}/${a.path}/${w.name}`;
        const timeline = c.board.history.timeline(ids, w, c.now);
        charts[key] = chartData(timeline);
        return timelineFigure(key, a.title, timeline);
      }).join('\n');
    })
    .join('\n');
  const body = `<section aria-labelledby="answer-h">
<h2 id="answer-h">Can people here call?</h2>
${banners(states).map((b) => renderBanner(b, c.now)).join('\n')}
${answers.length > 0 ? `<ul class="answers">${answers.map((a) => renderAnswer(a, c.now)).join('\n')}</ul>` : '<p>No services planned.</p>'}
</section>
<section aria-labelledby="timelines-h">
<h2 id="timelines-h">Timelines</h2>
<div class="timelines">${figures}</div>
</section>
${LEGEND}
<section aria-labelledby="targets-h">
<h2 id="targets-h">Targets</h2>
${renderTargets(c.board.list(), c.now)}
</section>`;
  return page({
    title: `callprobe · ${c.vantage}`,
    heading: `callprobe · ${esc(c.vantage)}`,
    meta: `updated <span data-ago="${new Date(c.now).toISOString()}">now</span> · version ${esc(c.version)} · running since ${ago(c.startedAt, c.now)} · <a href="/api/summary">/api/summary</a> · <a href="/api/status">/api/status</a> · <a href="/api/results?limit=100">/api/results</a> · <a href="/metrics">/metrics</a>`,
    body,
    assets: c.assets,
    data: { charts },
  });
}

function renderBanner(b: Banner, now: number): string {
  const heading = b.kind === 'network-down' ? 'Your network is down' : 'Allowlist regime';
  return `<div class="banner banner-${b.kind}" role="alert"><strong>${heading}</strong>${esc(b.text)} ${sinceText(b.since, now)}</div>`;
}

function renderAnswer(a: ServiceAnswer, now: number): string {
  return `<li class="answer s-${a.state}" data-answer="${esc(`${a.service}/${a.path}`)}">${badge(a.state)}<span class="title">${esc(a.title)}</span><span class="since">${sinceText(a.since, now)}</span><span class="why">${esc(a.text)}</span></li>`;
}

const LEGEND = `<section class="legend" aria-labelledby="legend-h">
<h2 id="legend-h">What the words mean</h2>
<dl>
<dt>${badge('ok')}</dt><dd>Every step worked: the service's servers answered as the service would.</dd>
<dt>${badge('degraded')}</dt><dd>Some targets fail while others work, or media got through with too much loss, jitter or throttling (striped in the charts).</dd>
<dt>${badge('blocked')}</dt><dd>A step failed while a control (a destination with no tie to the service) passed the same step at the same time (hatched in the charts).</dd>
<dt>${badge('unknown')}</dt><dd>Nothing can be concluded: the controls failed too (the network here is down), or silence from a target that may ignore strangers.</dd>
<dt>scope</dt><dd><b>only this service</b>: foreign controls work; <b>allowlist</b>: only domestic controls work; <b>network</b>: no control works.</dd>
<dt>times</dt><dd>Your local time, with UTC in brackets; "for" is how long the state has lasted, from the records (it survives restarts).</dd>
</dl>
</section>`;

function renderTargets(targets: TargetStatus[], now: number): string {
  const services = new Map<string, TargetStatus[]>();
  for (const t of targets) services.set(t.service, [...(services.get(t.service) ?? []), t]);
  return [...services.entries()]
    .sort(([a], [b]) => (a === 'control' ? 1 : b === 'control' ? -1 : a.localeCompare(b)))
    .map(([service, list]) => {
      const rows = list
        .map((t) => {
          const l = t.latest;
          const what = t.control ? `control, ${t.location}` : `${answerTitle(t.service, t.path)}, ${t.location}`;
          return `<tr><td><a href="/target?id=${encodeURIComponent(t.id)}">${esc(t.target)}</a><br><code>${esc(t.endpoint)}</code></td><td>${esc(what)}</td><td>${verdictBadge(l?.verdict ?? null)}</td><td>${sinceText(t.since, now)}</td><td>${l ? esc(failingStep(l.failedPhase, l.failure)) : ''}</td><td>${l ? ago(l.startedAt, now) : ''}</td></tr>`;
        })
        .join('\n');
      return `<h3>${esc(serviceName(service))}</h3>
<table><thead><tr><th>target</th><th>stands for</th><th>verdict</th><th>since</th><th>what fails</th><th>last run</th></tr></thead>
<tbody>${rows}</tbody></table>`;
    })
    .join('\n');
}
