import type { TargetStatus } from '../sinks/status.js';

/** Server-rendered status page: readable without JavaScript, over SSH port-forwarding, in any browser. */
export function renderStatusPage(opts: { vantage: string; version: string; startedAt: string; targets: TargetStatus[] }): string {
  const services = new Map<string, TargetStatus[]>();
  for (const t of opts.targets) {
    const list = services.get(t.service) ?? [];
    list.push(t);
    services.set(t.service, list);
  }
  const sections = [...services.entries()]
    .sort(([a], [b]) => (a === 'control' ? -1 : b === 'control' ? 1 : a.localeCompare(b)))
    .map(([service, targets]) => renderService(service, targets))
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30"><title>callprobe · ${esc(opts.vantage)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1b1b;background:#fafafa}
h1{font-size:1.3rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.5rem 0 .4rem}.meta{color:#555}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}.ok{background:#d8f3dc}.fail{background:#ffd6d6}.skip{color:#999;background:#f6f6f6}
.v-ok{color:#1a7f37}.v-blocked{color:#b42318;font-weight:600}.v-degraded{color:#b54708;font-weight:600}.v-error{color:#6b7280}
.hist span{display:inline-block;width:7px;height:14px;margin-right:1px}.h-ok{background:#2da44e}.h-blocked{background:#cf222e}
.h-degraded{background:#d4a72c}.h-error{background:#8c959f}code{font-size:12px}
</style></head><body>
<h1>callprobe · ${esc(opts.vantage)}</h1>
<div class="meta">version ${esc(opts.version)} · running since ${esc(opts.startedAt)} · <a href="/api/status">/api/status</a> · <a href="/api/results?limit=100">/api/results</a> · <a href="/metrics">/metrics</a></div>
${sections || '<p>No targets planned.</p>'}
</body></html>`;
}

function renderService(service: string, targets: TargetStatus[]): string {
  const phaseNames = [...new Set(targets.flatMap((t) => t.phases))];
  const rows = targets
    .map((t) => {
      const latest = t.latest;
      const cells = phaseNames
        .map((name) => {
          const p = latest?.phases.find((x) => x.phase === name);
          if (!t.phases.includes(name)) return '<td></td>';
          if (!p) return '<td class="skip">—</td>';
          if (p.skipped) return '<td class="skip">skipped</td>';
          if (p.ok) return `<td class="ok">${p.durationMs.toFixed(1)} ms</td>`;
          return `<td class="fail"><code>${esc(p.failure ?? '')}</code></td>`;
        })
        .join('');
      const verdict = latest ? `<span class="v-${latest.verdict}">${latest.verdict}</span>` : '<span class="v-error">not run yet</span>';
      const hist = t.history.map((h) => `<span class="h-${h.verdict}" title="${esc(h.startedAt)} ${esc(h.failure ?? 'ok')}"></span>`).join('');
      const when = latest ? esc(latest.startedAt) : '';
      return `<tr><td><b>${esc(t.target)}</b><br><code>${esc(t.endpoint)}</code></td><td>${verdict}</td>${cells}<td>${when}</td><td class="hist">${hist}</td></tr>`;
    })
    .join('\n');
  return `<h2>${esc(service)}</h2>
<table><thead><tr><th>target</th><th>verdict</th>${phaseNames.map((p) => `<th>${esc(p)}</th>`).join('')}<th>last run</th><th>history</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
