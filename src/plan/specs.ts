import { isIP } from 'node:net';
import type { Catalogue, CatalogueTarget, Config } from '../config/schema.js';
import type { PhaseRegistry, PlannedContext } from '../phases/types.js';
import type { PhaseSettings, PlannedPhase, ProbeSpec, TargetEndpoint, TargetPath } from '../types.js';

/** One catalogue target as a spec: its endpoint, its completed chain of phases, its schedule. */
export function toSpec(catalogue: Catalogue, t: CatalogueTarget, config: Config, file: string, phases: PhaseRegistry): ProbeSpec {
  const endpoint = endpointOf(t);
  const timeoutMs = t.phaseTimeout ?? config.schedule.phaseTimeout;
  const listed = t.phases.map((p) => {
    const [name, params] = typeof p === 'string' ? [p, {}] : (Object.entries(p)[0] as [string, unknown]);
    // Validated by the catalogue schema; parse again only to apply the phase's own defaults.
    return { name, params: phases.get(name)!.params.parse(params ?? {}), timeoutMs };
  });
  const chain = completeChain(listed, endpoint, phases);
  return {
    id: `${catalogue.service}/${t.name}`,
    service: catalogue.service,
    target: t.name,
    control: catalogue.control,
    path: t.path ?? pathOf(chain, phases),
    location: t.location ?? 'foreign',
    answersProbes: t.answersProbes ?? false,
    endpoint,
    phases: chain,
    intervalMs: t.interval ?? config.schedule.interval,
    runDeadlineMs: config.schedule.runDeadline,
    ...(t.source ? { source: t.source } : {}),
    catalogueFile: file,
  };
}

/** `calls` when any planned phase probes the call path, else `messaging`. */
export function pathOf(chain: readonly PlannedPhase[], phases: PhaseRegistry): TargetPath {
  return chain.some((p) => phases.get(p.name)?.path === 'calls') ? 'calls' : 'messaging';
}

function endpointOf(t: CatalogueTarget): TargetEndpoint {
  if (t.url) {
    const u = new URL(t.url);
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const port = u.port ? Number(u.port) : u.protocol === 'wss:' ? 443 : 80;
    return { host, port, url: t.url, ...(t.sni ? { sni: t.sni } : {}) };
  }
  return { host: t.host!, port: t.port ?? 0, ...(t.sni ? { sni: t.sni } : {}) };
}

/**
 * Makes the planned path explicit: a catalogue may list only the interesting phases
 * (`[websocket, mtproto]`), and the plan adds what they stand on (`dns`, `tcp`, `tls`), marked
 * `implied`, so every record shows the whole path a call would take.
 */
export function completeChain(listed: PlannedPhase[], endpoint: TargetEndpoint, phases: PhaseRegistry): PlannedPhase[] {
  const out: PlannedPhase[] = [];
  const has = (name: string): boolean => out.some((p) => p.name === name);
  const add = (name: string, timeoutMs: number): void => {
    out.push({ name, params: phases.get(name)!.params.parse({}), timeoutMs, implied: true });
  };
  const secure = endpoint.url?.startsWith('wss:') ?? false;
  for (const phase of listed) {
    const def = phases.get(phase.name)!;
    const needs = def.needsFor?.(phase.params) ?? def.needs;
    if (needs !== 'nothing' && isIP(endpoint.host) === 0 && !has('dns')) add('dns', phase.timeoutMs);
    if ((needs === 'connection' || needs === 'tls') && !has('tcp')) add('tcp', phase.timeoutMs);
    if ((needs === 'tls' || (needs === 'connection' && secure && phase.name !== 'tls')) && !has('tls')) add('tls', phase.timeoutMs);
    out.push(phase);
  }
  return out;
}

/** What a phase's `check` is told of its place in a spec (the `index`-th planned phase). */
export function plannedContext(spec: ProbeSpec, index: number, settings: PhaseSettings): PlannedContext {
  const phase = spec.phases[index]!;
  return { target: spec.target, endpoint: spec.endpoint, timeoutMs: phase.timeoutMs, settings, before: spec.phases.slice(0, index).map((p) => p.name) };
}
