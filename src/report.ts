import type { Plan } from './plan/index.js';
import type { ProbeResult } from './result.js';
import { banners, serviceAnswers, type TargetState } from './sinks/answer.js';
import type { ProbeSpec } from './types.js';

/**
 * `callprobe once`: a line per service and path saying what works and what breaks, after a
 * banner when the network itself is down, and a line for the controls.
 */
export function formatAnswers(results: readonly ProbeResult[], specs: readonly ProbeSpec[]): string {
  const control = new Set(specs.filter((s) => s.control).map((s) => s.id));
  const states: TargetState[] = results.map((r) => ({
    service: r.service,
    target: r.target,
    control: control.has(`${r.service}/${r.target}`),
    path: r.path,
    location: r.location,
    latest: r,
    since: null,
  }));
  const answers = serviceAnswers(states);
  const width = Math.max(0, ...answers.map((a) => a.title.length)) + 1;
  const controls = states.filter((s) => s.control);
  const working = controls.filter((s) => s.latest!.failure === null).length;
  return [
    ...banners(states).map((b) => `! ${b.text}`),
    ...answers.map((a) => `${`${a.title}:`.padEnd(width)} ${a.text}`),
    `${'Controls:'.padEnd(width)} ${working} of ${controls.length} working`,
    '',
  ].join('\n');
}

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
    return `${s.control ? '[control] ' : ''}${s.id}`.padEnd(34) + ` every ${formatDuration(s.intervalMs).padEnd(4)} ${where.padEnd(44)} ${phases}`;
  });
  // Targets on longer intervals (rotations) cost a fraction of a connection per cycle.
  const cycleMs = plan.config.schedule.interval;
  const perCycle = (phase: string): number =>
    plan.specs.filter((s) => s.phases.some((p) => p.name === phase)).reduce((sum, s) => sum + cycleMs / s.intervalMs, 0);
  const atStart = (phase: string): number => plan.specs.filter((s) => s.phases.some((p) => p.name === phase)).length;
  const udp = (phase: string): number => perCycle(phase);
  return [
    `vantage ${plan.config.vantage.name}: ${plan.specs.length} targets; per ${formatDuration(cycleMs)} cycle on average ` +
      `${perCycle('tcp').toFixed(1)} TCP connections, ${perCycle('dns').toFixed(1)} DNS lookups, ` +
      `${udp('stun').toFixed(1)} STUN Binding and ${udp('turn-challenge').toFixed(1)} TURN Allocate transactions ` +
      `(1 datagram each when answered, at most 7 when not) and ${udp('tg-reflector').toFixed(1)} reflector probes ` +
      `(at most 10 hellos of 40 bytes each); ${atStart('tcp')} TCP, ${atStart('dns')} DNS and ` +
      `${atStart('stun') + atStart('turn-challenge') + atStart('tg-reflector')} UDP targets spread over the first cycle after start`,
    `resolver ${plan.settings.resolver ? `${plan.settings.resolver.address}:${plan.settings.resolver.port}` : '(none)'}; safety allow ${plan.safety.allow?.length ? plan.safety.allow.join(', ') : 'public internet'}`,
    '(phases in parentheses are implied by the ones after them)',
    ...lines,
    '',
  ].join('\n');
}

function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
