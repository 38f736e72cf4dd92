import type { FailureCode } from './failure.js';
import type { TargetLocation, TargetPath } from './types.js';

/**
 * Version of the record format: every JSON line carries it; a field that changes meaning or goes
 * away bumps it (README "Records"). 2: every `...Ms` offset in a phase's evidence counts from the
 * phase's start (in 1, a media stream's timeline, lastReceived and cutoff counted from its first
 * send, that is now `streamStartMs`; the stream phase's cutoffAtMs and lastDataMs from its
 * request; stun's attempts from the first request), and over TLS the stream phase's
 * cutoffAtBytes counts TCP payload (in 1, decrypted bytes).
 */
export const RESULT_SCHEMA = 2 as const;

export type Transport = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

/** What a phase saw: bounded in size (firstBytesHex at most 64 bytes). */
export interface Evidence {
  bytesSent?: number;
  bytesReceived?: number;
  firstBytesHex?: string;
  addresses?: string[];
  /** The raw system error (ECONNRESET, ...), for researchers. */
  error?: string;
  [key: string]: unknown;
}

export interface PhaseResult {
  phase: string;
  /** host:port or URL actually used. */
  endpoint: string;
  transport?: Transport;
  /** Monotonic clock (performance.now), ms, relative to the run's start. */
  startedAt: number;
  durationMs: number;
  ok: boolean;
  failure: FailureCode | null;
  /** Not run because an earlier phase failed: the planned path stays visible. */
  skipped?: true;
  evidence: Evidence;
}

export type Verdict = 'ok' | 'degraded' | 'blocked' | 'error';

/**
 * How far a failure reaches, judged from the controls: `service` (only this service's destinations
 * fail), `foreign` (domestic controls pass and the foreign ones fail: an allowlist regime),
 * `network` (the controls fail too: the vantage's network is down).
 */
export type VerdictScope = 'service' | 'foreign' | 'network';

/** The control a verdict leaned on: which control target, at which phase, and what it saw. */
export interface ControlRef {
  target: string;
  phase: string;
  ok: boolean;
  startedAt: string;
  /** Where the control is (a domestic control passing while foreign ones fail is an allowlist). */
  location: TargetLocation;
  /** For a control that failed: its run's failure and the phase it failed at (which may come before `phase`). */
  failure?: FailureCode | null;
  failedPhase?: string | null;
}

export interface ProbeResult {
  schema: typeof RESULT_SCHEMA;
  id: string;
  software: { name: 'callprobe'; version: string };
  vantage: { name: string; asn?: number; country?: string };
  service: string;
  target: string;
  /** What of a call the target stands for (signalling or the call path), and where it is. */
  path: TargetPath;
  location: TargetLocation;
  /** ISO 8601, wall clock. */
  startedAt: string;
  durationMs: number;
  phases: PhaseResult[];
  verdict: Verdict;
  /** How far the failure reaches (null when ok, degraded, or when the controls cannot say). */
  scope: VerdictScope | null;
  /** Why the verdict is what it is, where the controls alone do not say (e.g. the known-responsive rule). */
  reason?: string;
  failure: FailureCode | null;
  failedPhase: string | null;
  /** The control consulted for the verdict, or null when none applied (see README "Verdicts"). */
  control: ControlRef | null;
  /**
   * How far callprobe's own clock can be trusted for this run: the worst event-loop delay seen
   * while it ran. Above 50 ms (`reliable: false`) its durations and media timings may be
   * inflated by callprobe's own stall, not by the network.
   */
  timing?: RunTiming;
  order?: RunOrder;
  /** Probes to the same network in the 30 minutes before (newest first): a block that lingers after one flow shows here. */
  sameNetworkBefore?: SameNetworkRun[];
}

/** An earlier probe to the same /24 (IPv4) or /48 (IPv6) network, within the 30 minutes before a run. */
export interface SameNetworkRun {
  service: string;
  target: string;
  startedAt: string;
  /** `udp` when it sent UDP (which has triggered network-wide blocks), else `tcp`. */
  transport: 'udp' | 'tcp';
  failure: FailureCode | null;
  failedPhase: string | null;
  /** The network both reached, e.g. 91.108.9.0/24. */
  network: string;
}

/** Where a run stood in the order probes ran in (random, from a recorded seed). */
export interface RunOrder {
  seed: string;
  /** Its place: in a `once` cycle, its position; in the daemon, the runs started before it since start. */
  index: number;
}

export interface RunTiming {
  eventLoopDelayMaxMs: number;
  reliable: boolean;
}

/** A finished run before the verdict: the verdict needs the controls (engine/verdict.ts). */
export type RunRecord = Omit<ProbeResult, 'verdict' | 'control' | 'scope' | 'reason'>;
