import { SafetyGuard } from '../../src/engine/guard.js';
import { runSpec } from '../../src/engine/runner.js';
import type { RunRecord } from '../../src/result.js';
import { silentLogger } from '../../src/log.js';
import { PHASES } from '../../src/phases/index.js';
import type { PhaseRegistry } from '../../src/phases/types.js';
import type { PhaseSettings, TargetEndpoint, TargetLocation } from '../../src/types.js';
import { completeChain } from '../../src/plan/index.js';
import { pathOf } from '../../src/plan/specs.js';
import type { ProbeSpec } from '../../src/types.js';

/** Tests only ever reach loopback and the lab range: a mistake fails as policy_denied. */
export const TEST_ALLOW = ['127.0.0.0/8', '::1/128', '198.18.0.0/15'];

export type PhaseInput = string | Record<string, unknown>;

export function specFor(opts: {
  endpoint: TargetEndpoint;
  phases: PhaseInput[];
  timeoutMs?: number;
  service?: string;
  target?: string;
  control?: boolean;
  /** The registered phases to plan with (default: the shipped ones). */
  registry?: PhaseRegistry;
  location?: TargetLocation;
  answersProbes?: boolean;
}): ProbeSpec {
  const registry = opts.registry ?? PHASES;
  const timeoutMs = opts.timeoutMs ?? 2000;
  const listed = opts.phases.map((p) => {
    const [name, params] = typeof p === 'string' ? [p, {}] : (Object.entries(p)[0] as [string, unknown]);
    const def = registry.get(name);
    if (!def) throw new Error(`unknown phase ${name}`);
    return { name, params: def.params.parse(params ?? {}), timeoutMs };
  });
  const chain = completeChain(listed, opts.endpoint, registry);
  const service = opts.service ?? 'test';
  const target = opts.target ?? 't';
  return {
    id: `${service}/${target}`,
    service,
    target,
    control: opts.control ?? false,
    path: pathOf(chain, registry),
    location: opts.location ?? 'foreign',
    answersProbes: opts.answersProbes ?? false,
    endpoint: opts.endpoint,
    phases: chain,
    intervalMs: 60_000,
    runDeadlineMs: 30_000,
    catalogueFile: '(test)',
  };
}

export function settingsFor(over: Partial<PhaseSettings> = {}): PhaseSettings {
  return { resolver: null, extraCa: [], userAgent: 'callprobe-test', ...over };
}

export async function runOnce(
  spec: ProbeSpec,
  opts: { settings?: Partial<PhaseSettings>; allow?: string[]; signal?: AbortSignal; registry?: PhaseRegistry } = {},
): Promise<RunRecord> {
  return runSpec(
    spec,
    {
      phases: opts.registry ?? PHASES,
      guard: new SafetyGuard({ allow: opts.allow ?? TEST_ALLOW }),
      settings: settingsFor(opts.settings),
      vantage: { name: 'test' },
      log: silentLogger(),
    },
    opts.signal ?? new AbortController().signal,
  );
}
