/**
 * config + catalogues → plan: the one place where what the volunteer wrote becomes what runs.
 * Everything is validated here, once, and every problem names its file, line and column; after
 * the plan nothing downstream re-checks config.
 */
import { ConfigError, formatPath, loadYaml, locate } from '../config/loader.js';
import { configSchema, type Config } from '../config/schema.js';
import { PHASES } from '../phases/index.js';
import type { PhaseRegistry } from '../phases/types.js';
import type { PhaseSettings, ProbeSpec, SafetyPolicy } from '../types.js';
import { loadCatalogues } from './catalogues.js';
import { settingsOf } from './settings.js';
import { plannedContext, toSpec } from './specs.js';
import { turnSpecs } from './turn-targets.js';

export { EMBEDDED_CATALOGUE_DIR } from './catalogues.js';
export { completeChain, plannedContext } from './specs.js';
export { TURN_SERVICE } from './turn-targets.js';

export interface Plan {
  config: Config;
  configFile: string | null;
  specs: ProbeSpec[];
  settings: PhaseSettings;
  safety: SafetyPolicy;
  /** The phases the specs name, by name: the runner, the verdicts and the metrics look them up here. */
  phases: PhaseRegistry;
}

/** Reads a config file (or none: embedded defaults) and its catalogues into a plan. */
export function loadPlan(configFile: string | null, phases: PhaseRegistry = PHASES): Plan {
  const config = configFile ? loadYaml(configFile, configSchema) : configSchema.parse({});
  return buildPlan(config, configFile, phases);
}

export function buildPlan(config: Config, configFile: string | null, phases: PhaseRegistry = PHASES): Plan {
  const problems: string[] = [];
  const where = (path: Array<string | number>): string => (configFile ? locate(configFile, path) : '(defaults)');
  const { loaded, services } = loadCatalogues(config, configFile, phases, problems);

  const specs: ProbeSpec[] = [];
  for (const { file, catalogue } of loaded) {
    if (!catalogue.control && config.services && !config.services.includes(catalogue.service)) continue;
    const names = new Set<string>();
    catalogue.targets.forEach((t, i) => {
      if (names.has(t.name)) problems.push(`${locate(file, ['targets', i, 'name'])}: targets[${i}].name: duplicate target "${t.name}"`);
      names.add(t.name);
      try {
        specs.push({ ...toSpec(catalogue, t, config, file, phases), cataloguePath: ['targets', i] });
      } catch (err) {
        problems.push(`${locate(file, ['targets', i])}: targets[${i}]: ${(err as Error).message}`);
      }
    });
  }
  specs.push(...turnSpecs(config, configFile, services, problems, where, phases));
  const { settings, safety } = settingsOf(config, configFile, problems);
  problems.push(...phaseProblems(specs, settings, phases));
  if (problems.length > 0) throw new ConfigError(problems);
  return { config, configFile, specs, settings, safety, phases };
}

/** Runs each planned phase's own check (timeouts against its schedule, settings it needs). */
function phaseProblems(specs: readonly ProbeSpec[], settings: PhaseSettings, phases: PhaseRegistry): string[] {
  return specs.flatMap((s) =>
    s.phases.flatMap((p, i) => {
      const problem = phases.get(p.name)?.check?.(p.params, plannedContext(s, i, settings)) ?? null;
      if (problem === null) return [];
      const path = s.cataloguePath ?? [];
      const where = path.length > 0 ? `${locate(s.catalogueFile, path)}: ${formatPath(path)}` : `${s.catalogueFile}: ${s.id}`;
      return [`${where}: ${p.name}: ${problem}`];
    }),
  );
}
