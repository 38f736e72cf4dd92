#!/usr/bin/env node
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, loadYaml } from './config/loader.js';
import { defaultDataDir } from './config/paths.js';
import { configSchema } from './config/schema.js';
import { StartupError, startDaemon } from './daemon.js';
import { Engine } from './engine/engine.js';
import { createLogger, silentLogger } from './log.js';
import { PHASES } from './phases/index.js';
import { loadPlan, type Plan } from './plan/index.js';
import type { ProbeResult } from './result.js';
import { formatAnswers, formatPlan, formatResult } from './report.js';
import { formatReport, parseSince, reportFromRecords, REPORT_FORMATS, type ReportFormat } from './report/index.js';
import { ownAddressFilter } from './sinks/privacy.js';
import { VERSION } from './version.js';

const USAGE = `callprobe ${VERSION}: is a WhatsApp or Telegram call possible from here, and if not, which step breaks?

usage:
  callprobe run [--config FILE]              the daemon, with its status page and metrics
  callprobe once [--config FILE] [--service S]... [--json] [--targets]
                                             one cycle now; a line per service saying what works
  callprobe plan [--config FILE] [--json]    what would be probed, where, how often (sends nothing)
  callprobe report [--config FILE] [--since 7d] [--service S]... [--format text|json|csv]
                                             what the records say: verdicts since when, failures, latencies
  callprobe check-config FILE                validate a config and its catalogues
  callprobe reflector --config FILE          the media reflector researchers run outside the censored network
  callprobe healthcheck --config FILE        ask the daemon of FILE whether it is healthy
  callprobe --version

"callprobe COMMAND --help" says more about each command.
exit codes: 0 ok, 1 a probe was not ok (once) or the daemon is not healthy (healthcheck), 2 bad usage or config.`;

class UsageError extends Error {
  constructor(
    message: string,
    readonly help = USAGE,
  ) {
    super(message);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

const CONFIG = { config: { type: 'string', short: 'c' } } as const satisfies Options;
const HELP = { help: { type: 'boolean', short: 'h' } } as const satisfies Options;

/** A subcommand: its own options, its help, and what it does with them. */
interface Command<O extends Options> {
  options: O;
  positionals?: boolean;
  help: string;
  run(values: ParsedValues<O>, positionals: string[]): Promise<number> | number;
}

type ParsedValues<O extends Options> = ReturnType<typeof parseArgs<{ options: O; allowPositionals: true }>>['values'];

const REPORT_OPTIONS = {
  ...CONFIG,
  ...HELP,
  since: { type: 'string' },
  service: { type: 'string', short: 's', multiple: true },
  format: { type: 'string', short: 'f' },
  records: { type: 'string' },
} as const satisfies Options;

function command<O extends Options>(c: Command<O>): Command<O> {
  return c;
}

const COMMANDS = {
  run: command({
    options: { ...CONFIG, ...HELP },
    help: `usage: callprobe run [--config FILE]

Runs the daemon: probes every planned target on its schedule, writes the records, serves the
status page, /metrics and the API (http.listen, default http://127.0.0.1:9465). SIGHUP reloads
the config (a bad one keeps the running plan), SIGTERM stops after the runs in flight.

  -c, --config FILE   the config (default: the embedded catalogues and every default)
  -h, --help          this text`,
    run: (v) => runDaemon(v.config ?? null),
  }),
  once: command({
    options: {
      ...CONFIG,
      ...HELP,
      service: { type: 'string', short: 's', multiple: true },
      json: { type: 'boolean' },
      targets: { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
    },
    help: `usage: callprobe once [--config FILE] [--service S]... [--json] [--targets] [--verbose]

Runs one cycle now (controls first) and says, one line per service and path, what works and what
breaks. Exit 0 when every probe is ok, 1 when one is not.

  -c, --config FILE   the config (default: the embedded catalogues)
  -s, --service S     only this service (repeatable); controls always run
      --json          one record per line (JSON), as the daemon writes them
      --targets       one line per target instead, phase by phase
  -v, --verbose       debug logs on stderr
  -h, --help          this text`,
    run: (v) => runOnce(v.config ?? null, v.service ?? [], v.json ? 'json' : v.targets ? 'targets' : 'answers', v.verbose ?? false),
  }),
  plan: command({
    options: { ...CONFIG, ...HELP, json: { type: 'boolean' } },
    help: `usage: callprobe plan [--config FILE] [--json]

Prints what would be probed, where and how often, and what one cycle costs. Sends nothing.

  -c, --config FILE   the config (default: the embedded catalogues)
      --json          one planned target per line (JSON)
  -h, --help          this text`,
    run: (v) => {
      const plan = loadPlan(v.config ?? null);
      process.stdout.write(v.json ? plan.specs.map((s) => JSON.stringify(s)).join('\n') + '\n' : formatPlan(plan));
      return 0;
    },
  }),
  report: command({
    options: REPORT_OPTIONS,
    help: `usage: callprobe report [--config FILE] [--since 7d] [--service S]... [--format text|json|csv] [--records DIR]

What the records say, per target: the verdict as periods ("blocked since 2026-11-30 14:05 UTC,
212 runs"), the failures by phase and code, the median duration of each phase, and where streams
were cut off. Reads the records only: sends nothing.

  -c, --config FILE   the config whose data directory holds the records
      --since WHEN    how far back: a duration (7d, 36h) or a time (2026-11-30T14:00Z); default 7d
  -s, --service S     only this service (repeatable)
  -f, --format F      text (a table to paste, then details), json or csv; default text
      --records DIR   read this records directory instead (a copy from another vantage)
  -h, --help          this text`,
    run: (v) => runReport(v),
  }),
  'check-config': command({
    options: { ...CONFIG, ...HELP },
    positionals: true,
    help: `usage: callprobe check-config FILE

Validates a config and the catalogues it names; every problem is printed as FILE:LINE:COL, exit 2.

  -h, --help          this text`,
    run: (v, positionals) => {
      const file = positionals[0] ?? v.config;
      if (!file) throw new UsageError('check-config needs a FILE');
      const plan = loadPlan(file);
      process.stdout.write(`${file}: ok (${plan.specs.length} targets)\n`);
      return 0;
    },
  }),
  reflector: command({
    options: { ...CONFIG, ...HELP },
    positionals: true,
    help: `usage: callprobe reflector --config FILE

Runs the media reflector: the echo server that media and stream probes talk to, run by
researchers outside the censored network. It echoes only packets tagged with the shared key
(config/reflector.example.yaml shows its config).

  -c, --config FILE   the reflector's config
  -h, --help          this text`,
    run: async (v, positionals) => {
      const file = v.config ?? positionals[0];
      if (!file) throw new UsageError('reflector needs --config FILE');
      return (await import('./reflector/main.js')).runReflector(file);
    },
  }),
  healthcheck: command({
    options: { ...CONFIG, ...HELP },
    positionals: true,
    help: `usage: callprobe healthcheck --config FILE

Asks the daemon that FILE configures for /healthz at its http.listen address. Exit 0 when it
answers healthy, 1 when not (for a container's HEALTHCHECK).

  -c, --config FILE   the daemon's config
  -h, --help          this text`,
    run: async (v, positionals) => {
      const file = v.config ?? positionals[0];
      if (!file) throw new UsageError('healthcheck needs --config FILE');
      return (await import('./server/healthcheck.js')).healthcheck(file);
    },
  }),
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  if (!Object.hasOwn(COMMANDS, name)) throw new UsageError(`unknown command "${name}"`);
  const c = COMMANDS[name as keyof typeof COMMANDS] as Command<Options>;
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: rest, options: c.options, allowPositionals: c.positionals ?? false, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''), c.help);
  }
  if (parsed.values.help) {
    process.stdout.write(`${c.help}\n`);
    return 0;
  }
  try {
    return await c.run(parsed.values as ParsedValues<Options>, parsed.positionals);
  } catch (err) {
    // A command's own usage mistake is answered with that command's help.
    if (err instanceof UsageError && err.help === USAGE) throw new UsageError(err.message, c.help);
    throw err;
  }
}

async function runDaemon(configFile: string | null): Promise<number> {
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

async function runOnce(configFile: string | null, services: string[], output: 'json' | 'targets' | 'answers', verbose: boolean): Promise<number> {
  const plan: Plan = loadPlan(configFile);
  const known = new Set(plan.specs.map((s) => s.service));
  for (const s of services) if (!known.has(s)) throw new UsageError(`--service ${s}: no such service in the plan (${[...known].join(', ')})`);
  const specs = plan.specs.filter((s) => s.control || services.length === 0 || services.includes(s.service));
  const dataDir = plan.config.dataDir ?? defaultDataDir();
  // The same data directory as the daemon's: what the vantage learnt (which targets answer) is shared.
  const engine = new Engine(plan, verbose ? createLogger('debug') : silentLogger(), dataDir);
  // The daemon's install key, so that a token here means the same address as in its records.
  const shown = ownAddressFilter({ dataDir, keepOwnAddresses: plan.config.records.keepOwnAddresses, phases: plan.phases });
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort('interrupted by SIGINT'));
  const results: ProbeResult[] = [];
  await engine.cycle(specs, plan.config.schedule.concurrency, controller.signal, (raw) => {
    const r = shown(raw);
    results.push(r);
    if (output === 'json') process.stdout.write(JSON.stringify(r) + '\n');
  });
  engine.close();
  if (output === 'targets') process.stdout.write(results.map(formatResult).join('\n') + '\n');
  if (output === 'answers') process.stdout.write(formatAnswers(results, specs));
  return results.every((r) => r.verdict === 'ok') ? 0 : 1;
}

async function runReport(v: ParsedValues<typeof REPORT_OPTIONS>): Promise<number> {
  const format = (v.format ?? 'text') as ReportFormat;
  if (!REPORT_FORMATS.includes(format)) throw new UsageError(`--format ${v.format}: one of ${REPORT_FORMATS.join(', ')}`);
  const since = parseSince(v.since ?? '7d');
  if (!since) throw new UsageError(`--since ${v.since}: a duration such as 7d or 36h, or a time such as 2026-11-30T14:00Z`);
  // Only the data directory is needed: a config whose catalogues changed still reads its records.
  const dataDir = v.config ? (loadYaml(v.config, configSchema).dataDir ?? defaultDataDir()) : defaultDataDir();
  const records = v.records ?? join(dataDir, 'records');
  const report = await reportFromRecords(records, { since, services: v.service ?? [], phases: PHASES });
  process.stdout.write(formatReport(report, format));
  return 0;
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
      process.stderr.write(`callprobe: ${err.message}\n\n${err.help}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`callprobe: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 70;
    }
  },
);
