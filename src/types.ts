/**
 * Types shared across the layers (cli → daemon → engine → plan → config → phases → net →
 * protocol): what a planned probe is, what phases may know of the volunteer's settings, and the
 * safety guard's contract. Types only: importing this module from any layer creates no upward
 * dependency.
 */

/** Where a target lives, as the catalogue says (validated by the plan). */
export interface TargetEndpoint {
  /** A hostname or an IP literal. */
  host: string;
  port: number;
  /** For WebSocket targets: the full ws:// or wss:// URL. */
  url?: string;
  /** TLS server name; defaults to the host when it is a name. */
  sni?: string;
}

export interface TurnCredential {
  readonly username: string;
  readonly password: string;
}

/** Settings from the volunteer's config that phases need (never per-target). */
export interface PhaseSettings {
  resolver: { address: string; port: number } | null;
  /** Extra PEM CA certificates trusted by `tls` (the lab's CA); the system store is always used too. */
  extraCa: string[];
  userAgent: string;
  /**
   * TURN credentials from the config's `turn` section, by entry name. They never enter a spec, a
   * record, a metric or a log line (the plan makes the fields non-enumerable, so JSON and pino see
   * nothing).
   */
  turnCredentials?: ReadonlyMap<string, TurnCredential>;
  /** The reflector key (config `media.reflectorKey`) for `media` and `stream`; null when not configured. A secret. */
  mediaKey?: Uint8Array | null;
}

export interface PlannedPhase {
  name: string;
  params: unknown;
  timeoutMs: number;
  /** Added by the plan because a later phase needs it (e.g. `tcp` before `tls`). */
  implied?: true;
}

export type TargetPath = 'messaging' | 'calls';
export type TargetLocation = 'domestic' | 'foreign';

/** One target of one service, ready to run: everything downstream trusts it (validated once). */
export interface ProbeSpec {
  id: string;
  service: string;
  target: string;
  control: boolean;
  /** What of a call it stands for: signalling, or the call path (relays, STUN/TURN, media). */
  path: TargetPath;
  /** Where the destination is, seen from the vantage. */
  location: TargetLocation;
  /** The catalogue says (with a source) that it answers this probe: its silence is not ambiguous. */
  answersProbes: boolean;
  endpoint: TargetEndpoint;
  phases: PlannedPhase[];
  intervalMs: number;
  runDeadlineMs: number;
  source?: string;
  catalogueFile: string;
  /** Where in that file the target is defined (for problems found after validation). */
  cataloguePath?: Array<string | number>;
}

/** What the guard allows (config `safety`, plus the configured resolver as a DNS server). */
export interface SafetyPolicy {
  /** CIDRs. Empty or absent: the public internet (everything outside the special-purpose list). */
  allow?: readonly string[];
  /** CIDRs denied in addition to the special-purpose list; a deny entry always wins. */
  deny?: readonly string[];
  /** Resolvers the volunteer configured: trusted as DNS servers only, never as probe destinations. */
  resolvers?: readonly string[];
}

export type GuardPurpose = 'probe' | 'dns-server';

export interface GuardDecision {
  allowed: boolean;
  /** Which rule decided, e.g. "allow 198.18.0.0/15", "special-purpose 10.0.0.0/8 (private)", "not in allow". */
  rule: string;
  /** True when the address is special-purpose and no allow entry covers it: a bogon as DNS answer. */
  bogon: boolean;
}

/** The one gate every connect, send and DNS query passes through (implemented by engine/guard.ts). */
export interface DestinationGuard {
  check(address: string, purpose?: GuardPurpose): GuardDecision;
  /** Throws `policy_denied` (nothing may be sent) unless the address is allowed. */
  assert(address: string, purpose?: GuardPurpose): void;
}

/** The per-stream gauges phases feed (sinks/metrics.ts declares them; the phase says what goes in). */
export type PhaseGauge = 'media_loss_ratio' | 'media_jitter_seconds' | 'media_mos' | 'stream_cutoff_packets' | 'stream_cutoff_bytes';

/**
 * The per-target states phases feed: one series per possible value, 1 for the current one
 * (sinks/metrics.ts declares them and their values).
 */
export type PhaseState = 'media_diagnosis';

/** A state of a phase's last run; `value: null` removes the series (the phase could not say). */
export interface StateSample {
  state: PhaseState;
  value: string | null;
}

/** One gauge value of a phase's last run; `value: null` removes the series (nothing was measured). */
export interface GaugeSample {
  gauge: PhaseGauge;
  shape: string;
  value: number | null;
}
