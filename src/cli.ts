#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError } from './config/loader.js';
import { defaultDataDir } from './config/paths.js';
import { StartupError, startDaemon } from './daemon.js';
import { Engine } from './engine/engine.js';
import { createLogger, silentLogger } from './log.js';
import { loadPlan, type Plan } from './plan/index.js';
import type { ProbeResult } from './result.js';
import { formatPlan, formatResult } from './report.js';
import { ownAddressFilter } from './sinks/privacy.js';
import { VERSION } from './version.js';

const USAGE = `callprobe ${VERSION}: is a WhatsApp or Telegram call possible from here, and if not, which step breaks?

usage:
  callprobe run [--config FILE]                       the daemon (embedded defaults without --config)
  callprobe once [--config FILE] [--service S]... [--json] [--verbose]
                                                      one cycle; exit 0 if every probe is ok, 1 if not
  callprobe plan [--config FILE] [--json]             what would be probed, where, how often (sends nothing)
  callprobe check-config FILE                         validate a config and its catalogues
  callprobe reflector --config FILE                   the media reflector researchers run outside (src/reflector/)
  callprobe healthcheck --config FILE                 ask the daemon of FILE for /healthz; exit 0 healthy, 1 not
  callprobe --version

exit codes: 0 ok, 1 a probe was not ok (once) or the daemon is not healthy (healthcheck), 2 bad usage or config.`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  const { values, positionals } = parse(rest);
  switch (command) {
    case 'run':
      return run(values.config ?? null);
    case 'once':
      return runOnce(values.config ?? null, values.service ?? [], values.json ?? false, values.verbose ?? false);
    case 'plan': {
      const plan = loadPlan(values.config ?? null);
      process.stdout.write(values.json ? plan.specs.map((s) => JSON.stringify(s)).join('\n') + '\n' : formatPlan(plan));
      return 0;
    }
    case 'check-config': {
      const file = positionals[0] ?? values.config;
      if (!file) throw new UsageError('check-config needs a FILE');
      const plan = loadPlan(file);
      process.stdout.write(`${file}: ok (${plan.specs.length} targets)\n`);
      return 0;
    }
    case 'reflector': {
      const file = values.config ?? positionals[0];
      if (!file) throw new UsageError('reflector needs --config FILE');
      return (await import('./reflector/main.js')).runReflector(file);
    }
    case 'healthcheck': {
      const file = values.config ?? positionals[0];
      if (!file) throw new UsageError('healthcheck needs --config FILE');
      return (await import('./server/healthcheck.js')).healthcheck(file);
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        service: { type: 'string', short: 's', multiple: true },
        json: { type: 'boolean' },
        verbose: { type: 'boolean', short: 'v' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function run(configFile: string | null): Promise<number> {
  const log = createLogger();
  const daemon = await startDaemon(configFile, log);
  process.on('SIGHUP', () => daemon.reload());
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'signal received');
      void daemon.stop().then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

async function runOnce(configFile: string | null, services: string[], json: boolean, verbose: boolean): Promise<number> {
  const plan: Plan = loadPlan(configFile);
  const known = new Set(plan.specs.map((s) => s.service));
  for (const s of services) if (!known.has(s)) throw new UsageError(`--service ${s}: no such service in the plan (${[...known].join(', ')})`);
  const specs = plan.specs.filter((s) => s.control || services.length === 0 || services.includes(s.service));
  // The same data directory as the daemon's: what the vantage learnt (which targets answer) is shared.
  const dataDir = plan.config.dataDir ?? defaultDataDir();
  const engine = new Engine(plan, verbose ? createLogger('debug') : silentLogger(), dataDir);
  // The daemon's install key, so that a token here means the same address as in its records.
  const shown = ownAddressFilter({ dataDir, keepOwnAddresses: plan.config.records.keepOwnAddresses, phases: plan.phases });
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort('interrupted by SIGINT'));
  const results: ProbeResult[] = [];
  await engine.cycle(specs, plan.config.schedule.concurrency, controller.signal, (raw) => {
    const r = shown(raw);
    results.push(r);
    if (json) process.stdout.write(JSON.stringify(r) + '\n');
  });
  engine.close();
  if (!json) process.stdout.write(results.map(formatResult).join('\n') + '\n');
  return results.every((r) => r.verdict === 'ok') ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.problems.join('\n')}\n`);
      process.exitCode = 2;
    } else if (err instanceof StartupError) {
      process.stderr.write(`callprobe: ${err.message}\n`);
      process.exitCode = 1;
    } else if (err instanceof UsageError) {
      process.stderr.write(`callprobe: ${err.message}\n\n${USAGE}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`callprobe: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 70;
    }
  },
);
