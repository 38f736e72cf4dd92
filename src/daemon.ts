import { once } from 'node:events';
import { join } from 'node:path';
import { ConfigError } from './config/loader.js';
import { defaultDataDir } from './config/paths.js';
import { parseHostPort } from './net/address.js';
import { Engine } from './engine/engine.js';
import { seededRandom } from './engine/order.js';
import { Scheduler } from './engine/scheduler.js';
import type { Logger } from './log.js';
import { loadPlan, type Plan } from './plan/index.js';
import type { ProbeResult } from './result.js';
import { createHttpServer } from './server/http.js';
import { Metrics } from './sinks/metrics.js';
import { ownAddressFilter, type ResultFilter } from './sinks/privacy.js';
import { RecordWriter } from './sinks/records.js';
import { StatusBoard } from './sinks/status.js';

/** Grace for runs in flight on SIGTERM before they are cancelled (then recorded as `interrupted`). */
const STOP_GRACE_MS = 5_000;

export interface Daemon {
  plan: Plan;
  /** Where the HTTP server listens (its real port when the config asked for port 0). */
  address: { host: string; port: number } | null;
  reload(): boolean;
  stop(): Promise<void>;
}

/** The daemon could not start for a reason the volunteer can fix (a port in use, a directory). */
export class StartupError extends Error {}

function startupStep<T>(what: string, step: () => T): T {
  try {
    return step();
  } catch (err) {
    throw new StartupError(`cannot use ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * `callprobe run`: plan, scheduler, sinks and the HTTP server. A bad config throws ConfigError
 * before anything starts. SIGHUP reloads (a bad new config keeps the old plan running); SIGTERM
 * and SIGINT stop gracefully, flushing records.
 */
export async function startDaemon(configFile: string | null, log: Logger): Promise<Daemon> {
  let plan = loadPlan(configFile);
  const startedAt = new Date().toISOString();
  const metrics = new Metrics(plan.config.vantage.name, plan.phases);
  const status = new StatusBoard();
  const dataDir = plan.config.dataDir ?? defaultDataDir();
  const recordsDir = join(dataDir, 'records');
  const records = startupStep(`records directory ${recordsDir}`, () => new RecordWriter({
    dir: recordsDir,
    ...plan.config.records,
    onDrop: (n) => {
      metrics.recordsDropped.inc(n);
      log.warn({ dropped: n }, 'record queue full: result dropped');
    },
    onError: (err) => {
      metrics.recordsDropped.inc();
      log.error({ err }, 'writing records failed');
    },
  }));
  const engine = new Engine(plan, log, dataDir);
  // The one place results are made fit to show: every sink, the API and the logs get them scrubbed.
  const privacy = (p: Plan): ResultFilter =>
    startupStep(`the install key in ${dataDir}`, () => ownAddressFilter({ dataDir, keepOwnAddresses: p.config.records.keepOwnAddresses, phases: p.phases }));
  let shown = privacy(plan);
  const publish = (raw: ProbeResult): void => {
    const result = shown(raw);
    for (const [name, sink] of [
      ['records', () => records.write(result)],
      ['metrics', () => metrics.observe(result)],
      ['status', () => status.update(result)],
    ] as const) {
      try {
        sink();
      } catch (err) {
        log.error({ err, sink: name }, 'sink failed');
      }
    }
    log.info(
      { probe: `${result.service}/${result.target}`, verdict: result.verdict, failure: result.failure, phase: result.failedPhase, ms: result.durationMs },
      'probe finished',
    );
  };
  const scheduler = new Scheduler({
    concurrency: plan.config.schedule.concurrency,
    jitter: plan.config.schedule.jitter,
    // The order probes run in follows from this seed (in every record, and logged at start).
    random: seededRandom(engine.seed),
    startSpreadMs: plan.config.schedule.interval,
    run: async (spec, signal) => publish(await engine.probe(spec, signal)),
    onOverlap: (spec) => {
      metrics.overlap(spec);
      log.warn({ probe: spec.id }, 'previous run still going: slot skipped');
    },
  });
  metrics.declare(plan.specs);
  status.declare(plan.specs);
  metrics.configReloadOk.set(1);
  metrics.configReloadTime.set(Date.now() / 1000);

  let address: Daemon['address'] = null;
  const server = plan.config.http.enabled
    ? createHttpServer({
        registry: metrics.registry,
        status,
        recordsDir,
        current: () => ({ vantage: plan.config.vantage.name, token: plan.config.http.token }),
        startedAt,
        log,
        health: () => ({ ok: true, detail: { targets: plan.specs.length, activeRuns: scheduler.active } }),
        show: (r) => shown(r),
      })
    : null;
  if (server) {
    const listen = parseHostPort(plan.config.http.listen, 9465)!;
    server.listen(listen.port, listen.host);
    try {
      await once(server, 'listening');
    } catch (err) {
      throw new StartupError(`cannot listen on ${plan.config.http.listen} (http.listen): ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    const a = server.address();
    address = a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
    log.info({ listen: address }, 'http server listening');
  }
  // The page's history comes from the records, read in the background while probing starts.
  status.load(recordsDir, (r) => shown(r)).then(
    (loaded) => log.info(loaded, 'history loaded from the records'),
    (err: unknown) => log.error({ err }, 'reading the records for the history failed: the page starts from now'),
  );
  scheduler.start(plan.specs);
  log.info({ targets: plan.specs.length, vantage: plan.config.vantage.name, config: configFile ?? '(embedded defaults)', seed: engine.seed }, 'callprobe started');

  const reload = (): boolean => {
    try {
      const next = loadPlan(configFile);
      if (next.config.http.listen !== plan.config.http.listen || next.config.dataDir !== plan.config.dataDir) {
        log.warn('http.listen and dataDir changes take effect on restart');
      }
      // Say what changed, never the values of secrets: a rotated token must be visible as done.
      const changed = [
        ...(next.config.http.token !== plan.config.http.token ? ['http.token'] : []),
        ...(next.config.vantage.name !== plan.config.vantage.name ? ['vantage.name'] : []),
      ];
      if (next.config.records.keepOwnAddresses !== plan.config.records.keepOwnAddresses) shown = privacy(next);
      plan = next;
      metrics.setVantage(plan.config.vantage.name);
      engine.update(plan);
      metrics.declare(plan.specs);
      status.declare(plan.specs);
      scheduler.replace(plan.specs);
      metrics.configReloadOk.set(1);
      metrics.configReloadTime.set(Date.now() / 1000);
      log.info({ targets: plan.specs.length, vantage: plan.config.vantage.name, applied: changed }, 'configuration reloaded');
      return true;
    } catch (err) {
      metrics.configReloadOk.set(0);
      const problems = err instanceof ConfigError ? err.problems : [String(err)];
      log.error({ problems }, 'configuration reload failed: keeping the previous configuration');
      return false;
    }
  };
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      log.info('stopping: finishing runs in flight');
      await scheduler.stop(STOP_GRACE_MS);
      engine.close();
      await records.close();
      if (server) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      log.info('stopped');
    })());
  return {
    get plan() {
      return plan;
    },
    get address() {
      return address;
    },
    reload,
    stop,
  };
}
