import { readdirSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadYaml, locate } from '../config/loader.js';
import { catalogueSchema, type Catalogue, type Config } from '../config/schema.js';
import type { PhaseRegistry } from '../phases/types.js';

/** The service catalogues shipped with callprobe: `probes/` beside `src/` and `dist/`. */
export const EMBEDDED_CATALOGUE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'probes');

export interface LoadedCatalogue {
  file: string;
  catalogue: Catalogue;
}

export interface Catalogues {
  loaded: LoadedCatalogue[];
  /** Each service's catalogue file, for "also defined in" problems. */
  services: Map<string, string>;
}

/**
 * The embedded catalogues (unless the config turns them off) and the config's own, validated
 * against the registered phases; a service defined twice and a `services:` entry naming no
 * catalogue are problems of their own.
 */
export function loadCatalogues(config: Config, configFile: string | null, phases: PhaseRegistry, problems: string[]): Catalogues {
  const where = (path: Array<string | number>): string => (configFile ? locate(configFile, path) : '(defaults)');
  const baseDir = configFile ? dirname(resolve(configFile)) : process.cwd();
  const files = [
    ...(config.embeddedCatalogues ? listCatalogues(EMBEDDED_CATALOGUE_DIR) : []),
    ...config.catalogues.map((f) => (isAbsolute(f) ? f : join(baseDir, f))),
  ];
  const schema = catalogueSchema(phases);
  const loaded: LoadedCatalogue[] = [];
  for (const file of files) {
    try {
      loaded.push({ file, catalogue: loadYaml(file, schema) });
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems);
      else throw err;
    }
  }
  const services = new Map<string, string>();
  for (const { file, catalogue } of loaded) {
    const earlier = services.get(catalogue.service);
    if (earlier) problems.push(`${locate(file, ['service'])}: service: "${catalogue.service}" is also defined in ${earlier}`);
    services.set(catalogue.service, file);
  }
  const known = loaded.filter((c) => !c.catalogue.control).map((c) => c.catalogue.service);
  // A catalogue that failed to load would make its service look unknown: judge names only when all loaded.
  const allLoaded = loaded.length === files.length;
  (allLoaded ? (config.services ?? []) : []).forEach((s, i) => {
    if (!known.includes(s)) problems.push(`${where(['services', i])}: services[${i}]: unknown service "${s}" (known: ${known.join(', ') || 'none'})`);
  });
  return { loaded, services };
}

function listCatalogues(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort()
    .map((f) => join(dir, f));
}
