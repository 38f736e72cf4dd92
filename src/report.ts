import type { Plan } from './plan.js';
import type { ProbeResult } from './result.js';

/** One line per result for a terminal: verdict first, then the path phase by phase. */
export function formatResult(r: ProbeResult): string {
  const path = r.phases
    .map((p) => {
      if (p.skipped) return `${p.phase} -`;
      if (p.ok) return `${p.phase} ${p.durationMs.toFixed(1)}ms`;
      return `${p.phase} ${p.failure}`;
    })
    .join(' > ');
  const control = r.control ? ` (control ${r.control.target}/${r.control.phase}: ${r.control.ok ? 'ok' : 'failed'})` : '';
  return `${r.verdict.padEnd(8)} ${`${r.service}/${r.target}`.padEnd(32)} ${path}${control}`;
}

/** `callprobe plan`: what would be probed, where and how often, and what a cycle costs. */
export function formatPlan(plan: Plan): string {
  const lines = plan.specs.map((s) => {
    const where = s.endpoint.url ?? `${s.endpoint.host}:${s.endpoint.port}`;
    const phases = s.phases.map((p) => (p.implied ? `(${p.name})` : p.name)).join(' > ');
    return `${(s.control ? 'control ' : '') + s.id}`.padEnd(34) + ` every ${(s.intervalMs / 1000).toFixed(0)}s  ${where.padEnd(44)} ${phases}`;
  });
  const connections = plan.specs.filter((s) => s.phases.some((p) => p.name === 'tcp')).length;
  const lookups = plan.specs.filter((s) => s.phases.some((p) => p.name === 'dns')).length;
  return [
    `vantage ${plan.config.vantage.name}: ${plan.specs.length} targets; per cycle ${connections} TCP connections, ${lookups} DNS lookups`,
    `resolver ${plan.settings.resolver ? `${plan.settings.resolver.address}:${plan.settings.resolver.port}` : '(none)'}; safety allow ${plan.safety.allow?.length ? plan.safety.allow.join(', ') : 'public internet'}`,
    '(phases in parentheses are implied by the ones after them)',
    ...lines,
    '',
  ].join('\n');
}
