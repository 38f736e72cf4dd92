import { readFileSync, readdirSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { catalogueSchema, configSchema, turnServerAddress, type Catalogue, type CatalogueTarget, type Config } from './config/schema.js';
import { ConfigError, formatPath, loadYaml, locate } from './config/loader.js';
import { parseHostPort } from './config/units.js';
import { isLoopbackHost } from './net/cidr.js';
import { systemResolver } from './config/resolv.js';
import type { SafetyPolicy } from './engine/guard.js';
import { PHASES } from './phases/index.js';
import type { PhaseSettings, TargetEndpoint, TurnCredential } from './phases/types.js';

/** The service catalogues shipped with callprobe: `probes/` beside `src/` and `dist/`. */
export const EMBEDDED_CATALOGUE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'probes');

export interface PlannedPhase {
  name: string;
  params: unknown;
  timeoutMs: number;
  /** Added by the plan because a later phase needs it (e.g. `tcp` before `tls`). */
  implied?: true;
}

/** One target of one service, ready to run: everything downstream trusts it (validated once). */
export interface ProbeSpec {
  id: string;
  service: string;
  target: string;
  control: boolean;
  endpoint: TargetEndpoint;
  phases: PlannedPhase[];
  intervalMs: number;
  runDeadlineMs: number;
  source?: string;
  catalogueFile: string;
  /** Where in that file the target is defined (for problems found after validation). */
  cataloguePath?: Array<string | number>;
}

export interface Plan {
  config: Config;
  configFile: string | null;
  specs: ProbeSpec[];
  settings: PhaseSettings;
  safety: SafetyPolicy;
}

/** Reads a config file (or none: embedded defaults) and its catalogues into a plan. */
export function loadPlan(configFile: string | null): Plan {
  const config = configFile ? loadYaml(configFile, configSchema) : configSchema.parse({});
  return buildPlan(config, configFile);
}

export function buildPlan(config: Config, configFile: string | null): Plan {
  const problems: string[] = [];
  const where = (path: Array<string | number>): string => (configFile ? locate(configFile, path) : '(defaults)');
  const baseDir = configFile ? dirname(resolve(configFile)) : process.cwd();

  const files = [
    ...(config.embeddedCatalogues ? listCatalogues(EMBEDDED_CATALOGUE_DIR) : []),
    ...config.catalogues.map((f) => (isAbsolute(f) ? f : join(baseDir, f))),
  ];
  const catalogues: Array<{ file: string; catalogue: Catalogue }> = [];
  for (const file of files) {
    try {
      catalogues.push({ file, catalogue: loadYaml(file, catalogueSchema) });
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems);
      else throw err;
    }
  }
  const seenServices = new Map<string, string>();
  for (const { file, catalogue } of catalogues) {
    const earlier = seenServices.get(catalogue.service);
    if (earlier) problems.push(`${locate(file, ['service'])}: service: "${catalogue.service}" is also defined in ${earlier}`);
    seenServices.set(catalogue.service, file);
  }
  const known = catalogues.filter((c) => !c.catalogue.control).map((c) => c.catalogue.service);
  // A catalogue that failed to load would make its service look unknown: judge names only when all loaded.
  const allLoaded = catalogues.length === files.length;
  (allLoaded ? (config.services ?? []) : []).forEach((s, i) => {
    if (!known.includes(s)) problems.push(`${where(['services', i])}: services[${i}]: unknown service "${s}" (known: ${known.join(', ') || 'none'})`);
  });

  const specs: ProbeSpec[] = [];
  for (const { file, catalogue } of catalogues) {
    if (!catalogue.control && config.services && !config.services.includes(catalogue.service)) continue;
    const names = new Set<string>();
    catalogue.targets.forEach((t, i) => {
      if (names.has(t.name)) problems.push(`${locate(file, ['targets', i, 'name'])}: targets[${i}].name: duplicate target "${t.name}"`);
      names.add(t.name);
      try {
        specs.push({ ...toSpec(catalogue, t, config, file), cataloguePath: ['targets', i] });
      } catch (err) {
        problems.push(`${locate(file, ['targets', i])}: targets[${i}]: ${(err as Error).message}`);
      }
    });
  }
  specs.push(...turnSpecs(config, configFile, seenServices, problems, where));

  const resolverText = config.dns.resolver === 'system' ? systemResolver() : config.dns.resolver;
  const resolverAddr = resolverText ? parseHostPort(resolverText, 53) : null;
  if (config.dns.resolver !== 'system' && (!resolverAddr || isIP(resolverAddr.host) === 0 || resolverAddr.port === 0)) {
    problems.push(`${where(['dns', 'resolver'])}: dns.resolver: must be "system" or an IP address with an optional port`);
  }
  const extraCa: string[] = [];
  config.tls.extraCa.forEach((f, i) => {
    try {
      extraCa.push(readFileSync(isAbsolute(f) ? f : join(baseDir, f), 'utf8'));
    } catch (err) {
      problems.push(`${where(['tls', 'extraCa', i])}: tls.extraCa[${i}]: cannot read ${f}: ${(err as NodeJS.ErrnoException).code}`);
    }
  });
  const listen = parseHostPort(config.http.listen, 9465);
  if (!listen) problems.push(`${where(['http', 'listen'])}: http.listen: must be HOST:PORT`);
  else if (!isLoopbackHost(listen.host) && !config.http.token) {
    problems.push(`${where(['http', 'listen'])}: http.listen: listening beyond loopback needs http.token (at least 16 characters)`);
  }
  const settings: PhaseSettings = {
    resolver: resolverAddr && isIP(resolverAddr.host) !== 0 ? { address: resolverAddr.host, port: resolverAddr.port } : null,
    extraCa,
    userAgent: 'callprobe',
    turnCredentials: new Map(config.turn.map((t) => [t.name, hiddenCredential(t.username, t.password)])),
    mediaKey: config.media.reflectorKey ? Buffer.from(config.media.reflectorKey, 'hex') : null,
  };
  problems.push(...phaseProblems(specs, settings));
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    config,
    configFile,
    specs,
    settings,
    safety: {
      allow: config.safety.allow,
      deny: config.safety.deny,
      resolvers: resolverAddr ? [resolverAddr.host] : [],
    },
  };
}

function listCatalogues(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort()
    .map((f) => join(dir, f));
}

function toSpec(catalogue: Catalogue, t: CatalogueTarget, config: Config, file: string): ProbeSpec {
  const endpoint = endpointOf(t);
  const timeoutMs = t.phaseTimeout ?? config.schedule.phaseTimeout;
  const listed = t.phases.map((p) => {
    const [name, params] = typeof p === 'string' ? [p, {}] : (Object.entries(p)[0] as [string, unknown]);
    // Validated by the catalogue schema; parse again only to apply the phase's own defaults.
    return { name, params: PHASES.get(name)!.params.parse(params ?? {}), timeoutMs };
  });
  return {
    id: `${catalogue.service}/${t.name}`,
    service: catalogue.service,
    target: t.name,
    control: catalogue.control,
    endpoint,
    phases: completeChain(listed, endpoint),
    intervalMs: t.interval ?? config.schedule.interval,
    runDeadlineMs: config.schedule.runDeadline,
    ...(t.source ? { source: t.source } : {}),
    catalogueFile: file,
  };
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
export function completeChain(listed: PlannedPhase[], endpoint: TargetEndpoint): PlannedPhase[] {
  const out: PlannedPhase[] = [];
  const has = (name: string): boolean => out.some((p) => p.name === name);
  const add = (name: string, timeoutMs: number): void => {
    out.push({ name, params: PHASES.get(name)!.params.parse({}), timeoutMs, implied: true });
  };
  const secure = endpoint.url?.startsWith('wss:') ?? false;
  for (const phase of listed) {
    const def = PHASES.get(phase.name)!;
    const needs = def.needsFor?.(phase.params) ?? def.needs;
    if (needs !== 'nothing' && isIP(endpoint.host) === 0 && !has('dns')) add('dns', phase.timeoutMs);
    if ((needs === 'connection' || needs === 'tls') && !has('tcp')) add('tcp', phase.timeoutMs);
    if ((needs === 'tls' || (needs === 'connection' && secure && phase.name !== 'tls')) && !has('tls')) add('tls', phase.timeoutMs);
    out.push(phase);
  }
  return out;
}

/** The service the config's TURN servers are reported under: `turn/<name>`. */
export const TURN_SERVICE = 'turn';
/** A silent TURN server takes the whole RFC 8489 schedule (39.5 s) to declare, plus the release. */
const TURN_TIMEOUT_MS = 60_000;

/**
 * One `turn/<name>` target per TURN server in the config (the volunteer's own relays). Their
 * credentials go to the phase through `settings.turnCredentials`, never through the spec (which
 * `callprobe plan --json` prints). A catalogue target with a `turn` phase must name credentials
 * that the config has.
 */
function turnSpecs(
  config: Config,
  configFile: string | null,
  services: ReadonlyMap<string, string>,
  problems: string[],
  where: (path: Array<string | number>) => string,
): ProbeSpec[] {
  if (config.turn.length > 0 && services.has(TURN_SERVICE)) {
    problems.push(`${where(['turn'])}: turn: service "${TURN_SERVICE}" is also defined in ${services.get(TURN_SERVICE)}`);
  }
  const names = new Set<string>();
  const specs: ProbeSpec[] = [];
  config.turn.forEach((t, i) => {
    if (names.has(t.name)) problems.push(`${where(['turn', i, 'name'])}: turn[${i}].name: duplicate TURN server "${t.name}"`);
    names.add(t.name);
    const address = turnServerAddress(t)!; // the schema refused entries without one
    const endpoint: TargetEndpoint = { host: address.host, port: address.port, ...(t.sni ? { sni: t.sni } : {}) };
    const phase: PlannedPhase = {
      name: 'turn',
      params: PHASES.get('turn')!.params.parse({ transport: address.transport, credential: t.name }),
      timeoutMs: t.timeout ?? TURN_TIMEOUT_MS,
    };
    specs.push({
      id: `${TURN_SERVICE}/${t.name}`,
      service: TURN_SERVICE,
      target: t.name,
      control: false,
      endpoint,
      // dns/tcp/tls before it keep the ordinary phase timeout.
      phases: completeChain([phase], endpoint).map((p) => (p.implied ? { ...p, timeoutMs: config.schedule.phaseTimeout } : p)),
      intervalMs: t.interval ?? config.schedule.interval,
      runDeadlineMs: config.schedule.runDeadline,
      catalogueFile: configFile ?? '(config)',
      cataloguePath: ['turn', i],
    });
  });
  return specs;
}

/** Runs each planned phase's own check (timeouts against its schedule, settings it needs). */
function phaseProblems(specs: readonly ProbeSpec[], settings: PhaseSettings): string[] {
  return specs.flatMap((s) =>
    s.phases.flatMap((p) => {
      const problem = PHASES.get(p.name)?.check?.(p.params, { target: s.target, timeoutMs: p.timeoutMs, settings }) ?? null;
      if (problem === null) return [];
      const path = s.cataloguePath ?? [];
      const where = path.length > 0 ? `${locate(s.catalogueFile, path)}: ${formatPath(path)}` : `${s.catalogueFile}: ${s.id}`;
      return [`${where}: ${p.name}: ${problem}`];
    }),
  );
}

/** Credentials whose fields JSON, pino and util.inspect do not show (non-enumerable). */
function hiddenCredential(username: string, password: string): TurnCredential {
  return Object.defineProperties({} as TurnCredential, {
    username: { value: username, enumerable: false },
    password: { value: password, enumerable: false },
  });
}
