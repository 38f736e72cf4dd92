import { turnServerAddress, type Config } from '../config/schema.js';
import type { PhaseRegistry } from '../phases/types.js';
import type { PlannedPhase, ProbeSpec, TargetEndpoint, TurnCredential } from '../types.js';
import { completeChain } from './specs.js';

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
export function turnSpecs(
  config: Config,
  configFile: string | null,
  services: ReadonlyMap<string, string>,
  problems: string[],
  where: (path: Array<string | number>) => string,
  phases: PhaseRegistry,
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
      params: phases.get('turn')!.params.parse({ transport: address.transport, credential: t.name }),
      timeoutMs: t.timeout ?? TURN_TIMEOUT_MS,
    };
    specs.push({
      id: `${TURN_SERVICE}/${t.name}`,
      service: TURN_SERVICE,
      target: t.name,
      control: false,
      // The volunteer's own relay: part of the call path, wherever it runs (not known: foreign by default).
      path: 'calls',
      location: 'foreign',
      answersProbes: false,
      endpoint,
      // dns/tcp/tls before it keep the ordinary phase timeout.
      phases: completeChain([phase], endpoint, phases).map((p) => (p.implied ? { ...p, timeoutMs: config.schedule.phaseTimeout } : p)),
      intervalMs: t.interval ?? config.schedule.interval,
      runDeadlineMs: config.schedule.runDeadline,
      catalogueFile: configFile ?? '(config)',
      cataloguePath: ['turn', i],
    });
  });
  return specs;
}

/** Credentials whose fields JSON, pino and util.inspect do not show (non-enumerable). */
export function hiddenCredential(username: string, password: string): TurnCredential {
  return Object.defineProperties({} as TurnCredential, {
    username: { value: username, enumerable: false },
    password: { value: password, enumerable: false },
  });
}
