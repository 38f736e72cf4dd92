import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { z } from 'zod';
import type { DestinationGuard } from '../types.js';
import type { Evidence, Transport } from '../result.js';
import type { Logger } from '../log.js';

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

/** Settings from the volunteer's config that phases need (never per-target). */
export interface PhaseSettings {
  resolver: { address: string; port: number } | null;
  /** Extra PEM CA certificates trusted by `tls` (the lab's CA); the system store is always used too. */
  extraCa: string[];
  userAgent: string;
  /**
   * TURN credentials from the config's `turn` section, by entry name. Only the `turn` phase reads
   * them; they never enter a spec, a record, a metric or a log line (the plan makes the fields
   * non-enumerable, so JSON and pino see nothing).
   */
  turnCredentials?: ReadonlyMap<string, TurnCredential>;
  /** The reflector key (config `media.reflectorKey`) for `media` and `stream`; null when not configured. A secret. */
  mediaKey?: Uint8Array | null;
}

export interface TurnCredential {
  readonly username: string;
  readonly password: string;
}

/** What flows from one phase to the next (design.md §7): addresses, an open connection, ... */
export interface RunState {
  addresses?: string[];
  /** The open byte stream: a TCP socket, or the TLS socket over it once `tls` ran. */
  socket?: Socket | TLSSocket;
  /** The raw TCP socket under everything (bytes on the wire are counted here). */
  tcp?: Socket;
  /** An open WebSocket (the `ws` library's client), once `websocket` ran. */
  ws?: import('ws').WebSocket;
  /** Closed by the runner when the run ends, whatever happened. */
  cleanups: Array<() => void>;
  [key: string]: unknown;
}

export interface PhaseContext<P = unknown> {
  readonly service: string;
  readonly target: string;
  readonly endpoint: TargetEndpoint;
  readonly params: P;
  /** Aborted when the phase's timeout fires or the run is cancelled; phases close their sockets on it. */
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  readonly guard: DestinationGuard;
  readonly settings: PhaseSettings;
  readonly state: RunState;
  readonly log: Logger;
  /**
   * Filled as the phase goes, so that a phase which fails half-way still reports what it sent and
   * what came back. The runner reads it whether the phase succeeded or threw.
   */
  readonly evidence: Evidence;
  /** The endpoint actually used (host:port or URL); set as soon as it is known. */
  endpointUsed: string;
  transport?: Transport;
}

export type PhaseNeeds = 'nothing' | 'addresses' | 'connection' | 'tls';

/**
 * One phase of a call path. It resolves when the phase succeeded and throws when it failed: a
 * `ProbeFailure` for what it classified itself, any other error for `classify` to map.
 */
export interface PhaseDefinition<S extends z.ZodType = z.ZodType> {
  readonly name: string;
  /** The phase's own parameters in the catalogue (`- mtproto: { transport: abridged }`). */
  readonly params: S;
  /**
   * Which control phase vouches for the network under this phase (design.md §6): a failure here is
   * `blocked` only if a control succeeded at that phase in the same cycle.
   */
  readonly controlPhase: string;
  /** Phases whose output this phase needs, e.g. `tls` needs an open connection from `tcp`. */
  readonly needs: PhaseNeeds;
  /** When what the phase stands on depends on its parameters (e.g. `stun` over UDP, TCP or TLS). */
  readonly needsFor?: (params: z.infer<S>) => PhaseNeeds;
  /**
   * What the plan can tell before anything runs: a timeout too short for the phase's own schedule,
   * a setting it needs that the config lacks. Returns the problem, or null; the plan reports it
   * with the catalogue's file, line and column, so nothing fails later at run time.
   */
  readonly check?: (params: z.infer<S>, planned: { target: string; timeoutMs: number; settings: PhaseSettings }) => string | null;
  run(ctx: PhaseContext<z.infer<S>>): Promise<void>;
}

/** Phases by name: the plan, the runner, the verdicts and the metrics look phases up here. */
export type PhaseRegistry = ReadonlyMap<string, PhaseDefinition>;
