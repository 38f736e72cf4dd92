import { z } from 'zod';
import { parseCidr } from '../net/cidr.js';
import type { PhaseRegistry } from '../phases/types.js';
import type { TargetLocation, TargetPath } from '../types.js';
import { ipPortSchema } from '../net/address.js';
import { durationBetween, size, sizeAtLeast } from '../units.js';
import { mediaKeySchema } from '../config/media-key.js';

const cidr = z.string().superRefine((value, ctx) => {
  try {
    parseCidr(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/** What of a call a target stands for, and where it is (README "Catalogues"). */
export const TARGET_PATHS = ['messaging', 'calls'] as const satisfies readonly TargetPath[];
export const TARGET_LOCATIONS = ['domestic', 'foreign'] as const satisfies readonly TargetLocation[];

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'must be lower-case letters, digits, "-", "_" or "." (at most 63), as it becomes a metric label');

/**
 * Bounds that keep a typo from hurting anyone for months: `interval: 0` would probe a target
 * hundreds of times a second, a timeout of 0 would fail every phase, and a timer longer than
 * about 24.8 days fires after 1 ms in Node. Per target (catalogues) and per TURN server alike.
 */
const probeInterval = durationBetween('10s', '7d', 'probing more often would flood the targets');
const phaseTimeout = durationBetween('100ms', '10m', 'a shorter timeout fails phases that work');
const runDeadline = durationBetween('1s', '1h', 'a shorter deadline interrupts runs that work');

/** Printable text for records, labels and the status page: no control characters, not blank. */
const vantageName = z
  .string()
  .max(64)
  .refine((s) => s.trim().length > 0, 'must not be blank')
  .refine((s) => !/\p{Cc}/u.test(s), 'must not contain control characters (such as NUL, a tab or a newline)');

/** RFC 7065 §3: turn:host[:port][?transport=udp|tcp] and turns:host[:port][?transport=tcp]; default ports 3478 and 5349. */
const TURN_URI = /^(turns?):(\[[0-9a-fA-F:.]+\]|[^:?\s\[\]]+)(?::(\d{1,5}))?(?:\?transport=(udp|tcp))?$/;

export interface TurnServerAddress {
  host: string;
  port: number;
  transport: 'udp' | 'tcp' | 'tls';
}

/** Where a `turn` config entry points: from its url, or from host/port/transport. Null when the url does not parse. */
export function turnServerAddress(entry: { url?: string; host?: string; port?: number; transport?: 'udp' | 'tcp' | 'tls' }): TurnServerAddress | null {
  if (entry.url === undefined) {
    const transport = entry.transport ?? 'udp';
    return { host: entry.host ?? '', port: entry.port ?? (transport === 'tls' ? 5349 : 3478), transport };
  }
  const m = TURN_URI.exec(entry.url);
  if (!m || (m[1] === 'turns' && m[4] === 'udp')) return null; // turns over UDP would be DTLS, which callprobe does not speak
  const transport = m[1] === 'turns' ? 'tls' : m[4] === 'tcp' ? 'tcp' : 'udp';
  const port = m[3] ? Number(m[3]) : transport === 'tls' ? 5349 : 3478;
  if (port < 1 || port > 65535) return null;
  return { host: m[2]!.replace(/^\[|\]$/g, ''), port, transport };
}

const turnServer = z
  .object({
    name,
    /** An RFC 7065 URI, e.g. turn:turn.example.org:3478?transport=tcp or turns:turn.example.org; or host/port/transport. */
    url: z.string().min(1).optional(),
    host: z.string().min(1).optional(),
    port: z.number().int().min(1).max(65535).optional(),
    transport: z.enum(['udp', 'tcp', 'tls']).optional(),
    /** TLS server name, when it differs from the host. */
    sni: z.string().min(1).optional(),
    username: z.string().min(1).max(508),
    password: z.string().min(1).max(763),
    interval: probeInterval.optional(),
    /** The turn phase's timeout: enough for a silent server's whole retransmission schedule (39.5 s) and the release. */
    timeout: phaseTimeout.optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    if ((t.url === undefined) === (t.host === undefined)) ctx.addIssue({ code: 'custom', message: 'a TURN server needs url or host, not both' });
    if (t.url !== undefined && (t.port !== undefined || t.transport !== undefined)) {
      ctx.addIssue({ code: 'custom', message: 'port and transport come from the url', path: ['url'] });
    }
    if (t.url !== undefined && turnServerAddress(t) === null) {
      ctx.addIssue({ code: 'custom', message: 'not a TURN URI (RFC 7065): turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]', path: ['url'] });
    }
  });

/** The volunteer's config (config/callprobe.example.yaml documents every key). */
export const configSchema = z
  .object({
    vantage: z
      .object({
        name: vantageName.default('unnamed'),
        asn: z.number().int().min(0).max(4294967295).optional(),
        country: z.string().regex(/^[A-Z]{2}$/, 'must be an ISO 3166-1 alpha-2 code such as RU').optional(),
      })
      .strict()
      .prefault({}),
    schedule: z
      .object({
        interval: probeInterval.prefault('5m'),
        /** Fraction of the interval each run is randomly shifted by, so a fleet does not synchronise. */
        jitter: z.number().min(0).max(1).default(0.1),
        concurrency: z.number().int().min(1).max(64).default(4),
        runDeadline: runDeadline.prefault('2m'),
        phaseTimeout: phaseTimeout.prefault('10s'),
      })
      .strict()
      .prefault({}),
    /** Catalogued services to probe; controls are always probed (they make verdicts possible). */
    services: z.array(name).optional(),
    /** Extra catalogue files (paths relative to this config file), added to the embedded ones. */
    catalogues: z.array(z.string().min(1)).default([]),
    /** Replace the embedded catalogues entirely (the lab does; volunteers normally do not). */
    embeddedCatalogues: z.boolean().default(true),
    /** Default: $STATE_DIRECTORY (systemd), /var/lib/callprobe for root, else ~/.local/state/callprobe. */
    dataDir: z.string().min(1).optional(),
    records: z
      .object({
        maxFileBytes: sizeAtLeast('64KiB', 'smaller files would rotate every few records').default(16 * 1024 * 1024),
        maxTotalBytes: size.default(512 * 1024 * 1024),
        queueLength: z.number().int().min(1).max(1_000_000).default(10_000),
        /**
         * Keep the vantage's own addresses (local, STUN-mapped, TURN-relayed) in records, the API,
         * the page and the logs. Default false: they become per-install tokens (README "Privacy").
         */
        keepOwnAddresses: z.boolean().default(false),
      })
      .strict()
      .superRefine((r, ctx) => {
        // The file being written counts towards the total and is never deleted: with less than
        // twice its size, every rotation would delete all the history there is.
        if (r.maxTotalBytes < 2 * r.maxFileBytes) {
          ctx.addIssue({
            code: 'custom',
            path: ['maxTotalBytes'],
            message: `must be at least twice records.maxFileBytes (${2 * r.maxFileBytes} bytes): the file being written counts towards the total`,
          });
        }
      })
      .prefault({}),
    http: z
      .object({
        /** IP:PORT; port 0 lets the kernel choose a free one (tests read it from the log). */
        listen: ipPortSchema.default('127.0.0.1:9465'),
        /** Required when listening beyond loopback; sent as "Authorization: Bearer <token>". */
        token: z.string().min(16).optional(),
        enabled: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    dns: z
      .object({
        /** "system" (the first nameserver of /etc/resolv.conf) or an address such as 198.18.2.2:53. */
        resolver: z.string().min(1).default('system'),
      })
      .strict()
      .prefault({}),
    tls: z
      .object({
        /** Extra PEM CA files to trust besides the system store (the lab CA). */
        extraCa: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .prefault({}),
    safety: z
      .object({
        allow: z.array(cidr).default([]),
        deny: z.array(cidr).default([]),
      })
      .strict()
      .prefault({}),
    media: z
      .object({
        /** The key shared with the callprobe reflectors the catalogues name (their config's `key`): a secret, never logged or recorded. */
        reflectorKey: mediaKeySchema.optional(),
      })
      .strict()
      .prefault({}),
    /** The volunteer's own TURN servers: each becomes a `turn/<name>` target (credentials stay in the turn phase). */
    turn: z.array(turnServer).default([]),
  })
  .strict();

export type Config = z.output<typeof configSchema>;

/** A phase in a catalogue: a name, or `{ name: { params } }`, checked against the phase's own schema. */
function phaseEntry(phases: PhaseRegistry) {
  return z.union([z.string(), z.record(z.string(), z.unknown())]).superRefine((entry, ctx) => {
    const [phaseName, phaseParams] = typeof entry === 'string' ? [entry, {}] : (Object.entries(entry)[0] ?? ['', {}]);
    if (typeof entry !== 'string' && Object.keys(entry).length !== 1) {
      ctx.addIssue({ code: 'custom', message: 'a phase is a name or a map with exactly one key: { phase: { params } }' });
      return;
    }
    const phase = phases.get(phaseName);
    if (!phase) {
      ctx.addIssue({ code: 'custom', message: `unknown phase "${phaseName}" (known: ${[...phases.keys()].join(', ')})` });
      return;
    }
    const parsed = phase.params.safeParse(phaseParams ?? {});
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        ctx.addIssue({
          code: 'custom',
          message: issue.message,
          path: typeof entry === 'string' ? [] : [phaseName, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))],
        });
      }
    }
  });
}

function targetSchema(phases: PhaseRegistry) {
  return z
    .object({
      name,
      /** Hostname or IP literal. */
      host: z.string().min(1).optional(),
      port: z.number().int().min(1).max(65535).optional(),
      /** ws:// or wss:// URL for WebSocket targets; host and port come from it. */
      url: z
        .string()
        .regex(/^wss?:\/\/[^/\s]+(\/\S*)?$/, 'must be a ws:// or wss:// URL')
        .optional(),
      sni: z.string().min(1).optional(),
      phases: z.array(phaseEntry(phases)).min(1),
      interval: probeInterval.optional(),
      phaseTimeout: phaseTimeout.optional(),
      /** Where the address or fact comes from (also written as a YAML comment). */
      source: z.string().optional(),
      description: z.string().optional(),
      /**
       * What of a call this target stands for: `messaging` (signalling: DNS, TLS, the service's
       * handshake) or `calls` (the call path: call servers, relays, STUN/TURN, media). Default:
       * `calls` when a phase of the call path is listed, else `messaging`.
       */
      path: z.enum(TARGET_PATHS).optional(),
      /**
       * Where the destination is, seen from the vantage: `foreign` (the default: the services'
       * servers abroad) or `domestic`. Domestic controls are what tell an allowlist regime
       * ("everything foreign fails") from a block of one service.
       */
      location: z.enum(TARGET_LOCATIONS).optional(),
      /**
       * The target is known to answer this probe (a source must say so): its silence is then
       * `blocked`, where silence from a target that may simply ignore an unsolicited probe is
       * `error` until it has answered once at this vantage.
       */
      answersProbes: z.boolean().optional(),
    })
    .strict()
    .superRefine((t, ctx) => {
      if (!t.host && !t.url) ctx.addIssue({ code: 'custom', message: 'a target needs host (and port) or url' });
      if (t.answersProbes && !t.source) ctx.addIssue({ code: 'custom', message: 'answersProbes: true needs a source that says the target answers this probe', path: ['answersProbes'] });
      if (t.host && !t.url && t.port === undefined && t.phases.some((p) => (typeof p === 'string' ? p : Object.keys(p)[0]) !== 'dns')) {
        ctx.addIssue({ code: 'custom', message: 'port is required when the target connects anywhere', path: ['port'] });
      }
    });
}

/** A service catalogue in probes/ (data, not code: adding a service touches no code), for the given phases. */
function buildCatalogueSchema(phases: PhaseRegistry) {
  return z
    .object({
      service: name,
      description: z.string().optional(),
      /** A control catalogue: its results judge the other services' failures. */
      control: z.boolean().default(false),
      targets: z.array(targetSchema(phases)).min(1),
    })
    .strict();
}

export type CatalogueSchema = ReturnType<typeof buildCatalogueSchema>;
const catalogueSchemas = new WeakMap<PhaseRegistry, CatalogueSchema>();

/** The catalogue schema for a set of phases (built once per registry). */
export function catalogueSchema(phases: PhaseRegistry): CatalogueSchema {
  let schema = catalogueSchemas.get(phases);
  if (!schema) catalogueSchemas.set(phases, (schema = buildCatalogueSchema(phases)));
  return schema;
}

export type Catalogue = z.output<CatalogueSchema>;
export type CatalogueTarget = Catalogue['targets'][number];
