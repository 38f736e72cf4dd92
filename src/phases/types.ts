import type { z } from 'zod';
import type { Logger } from '../log.js';
import type { Connection } from '../net/connection.js';
import type { PhaseTrace } from '../net/trace.js';
import type { Evidence, PhaseResult, Transport } from '../result.js';
import type { DestinationGuard, GaugeSample, PhaseSettings, StateSample, TargetEndpoint, TargetLocation, TargetPath } from '../types.js';

export type { Connection };

/**
 * What a phase stands on, and so what the runner hands it: `nothing`; `addresses` (from `dns`, or
 * the target's IP literal); `connection` (from `tcp`, wrapped by `tls` or `websocket` when they
 * ran); `tls` (a connection that must be TLS: the plan puts `tls` before it).
 */
export type PhaseNeeds = 'nothing' | 'addresses' | 'connection' | 'tls';

export interface NoInput {
  readonly kind: 'nothing';
}
export interface AddressesInput {
  readonly kind: 'addresses';
  /** IPv4 first, in the order found; never empty. */
  readonly addresses: readonly [string, ...string[]];
}
export interface ConnectionInput {
  readonly kind: 'connection';
  readonly connection: Connection;
}
export type PhaseInput = NoInput | AddressesInput | ConnectionInput;
export type InputFor<N extends PhaseNeeds> = N extends 'nothing' ? NoInput : N extends 'addresses' ? AddressesInput : ConnectionInput;

/** What a phase hands to the ones after it: addresses (`dns`) or an open connection (`tcp`, `tls`, `websocket`). */
export type PhaseOutput = { readonly addresses: readonly string[] } | { readonly connection: Connection } | void;

export interface PhaseContext<P = unknown, E extends Evidence = Evidence> {
  readonly service: string;
  readonly target: string;
  /** Where the target is (its catalogue entry): a media phase compares destinations by it. */
  readonly location: TargetLocation;
  readonly endpoint: TargetEndpoint;
  readonly params: P;
  /** Aborted when the phase's timeout fires or the run is cancelled; phases close their sockets on it. */
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  readonly guard: DestinationGuard;
  readonly settings: PhaseSettings;
  readonly log: Logger;
  /**
   * Filled as the phase goes, so that a phase which fails half-way still reports what it sent and
   * what came back. The runner reads it whether the phase succeeded or threw.
   */
  readonly evidence: E;
  /** Counts traffic into the evidence, keeps the phase's clock and publishes on diagnostics_channel. */
  readonly trace: PhaseTrace;
  /** The endpoint actually used (host:port or URL); set as soon as it is known. */
  endpointUsed: string;
  transport?: Transport;
  /** Closes something (a socket) when the whole run ends, whatever happened: later phases may still use it. */
  atRunEnd(cleanup: () => void): void;
}

/** Where a phase's check runs: what the plan knows of the phase's place in its spec. */
export interface PlannedContext {
  readonly target: string;
  readonly endpoint: TargetEndpoint;
  readonly timeoutMs: number;
  readonly settings: PhaseSettings;
  /** The phases planned before this one in the same spec, in order. */
  readonly before: readonly string[];
}

/**
 * One phase of a call path. `run` resolves when the phase succeeded (with what it hands on) and
 * throws when it failed: a `ProbeFailure` for what it classified itself, any other error for
 * `classify` to map (a TypeError or RangeError is our bug: `internal_error`).
 *
 * Methods, not function-valued fields: a definition for particular params and evidence is then a
 * PhaseDefinition like any other, and the registry holds them all without casts.
 */
export interface PhaseDefinition<S extends z.ZodType = z.ZodType, N extends PhaseNeeds = PhaseNeeds, E extends Evidence = Evidence> {
  readonly name: string;
  /** The phase's own parameters in the catalogue (`- mtproto: { transport: abridged }`). */
  readonly params: S;
  /**
   * Which control phase vouches for the network under this phase: a failure here is `blocked`
   * only if a control succeeded at that phase in the same cycle.
   */
  readonly controlPhase: string;
  /** The part of a call this phase probes (default `messaging`): a target with a `calls` phase stands for the call path. */
  readonly path?: TargetPath;
  /**
   * Whether a timeout here may only mean that the target ignores an unsolicited probe (a call
   * server asked for a Binding without a call, a reflector given a peer tag it never issued).
   * Such silence is `blocked` only for a target known to answer (the known-responsive rule).
   */
  silenceAmbiguous?(params: z.infer<S>): boolean;
  /** What the phase stands on, e.g. `tls` needs an open connection from `tcp`. */
  readonly needs: N;
  /** When what the phase stands on depends on its parameters (e.g. `stun` over UDP, TCP or TLS). */
  needsFor?(params: z.infer<S>): N;
  /**
   * What the plan can tell before anything runs: a timeout too short for the phase's own schedule,
   * a setting it needs that the config lacks, a phase it needs before it. Returns the problem, or
   * null; the plan reports it with the catalogue's file, line and column, so nothing fails later
   * at run time.
   */
  check?(params: z.infer<S>, planned: PlannedContext): string | null;
  /**
   * Where this phase's evidence holds an address of the vantage itself (our socket's local address,
   * the address a STUN or TURN server saw us as, a relayed address of ours): paths such as
   * `localAddress` or `relays[].mappedAddress`. sinks/privacy.ts replaces these, and the same IPs
   * anywhere else in the record, before anything is written or shown (README "Privacy").
   */
  readonly ownAddresses?: readonly string[];
  /** The gauges this phase feeds from a finished result (media loss, jitter, MOS, cut-offs). */
  gauges?(result: PhaseResult & { evidence: E }): GaugeSample[];
  /** The states this phase feeds from a finished result (the media diagnosis). */
  states?(result: PhaseResult & { evidence: E }): StateSample[];
  run(ctx: PhaseContext<z.infer<S>, E>, input: InputFor<N>): Promise<PhaseOutput>;
}

/** Phases by name: the plan, the runner, the verdicts and the metrics look phases up here. */
export type PhaseRegistry = ReadonlyMap<string, PhaseDefinition>;
