import { randomInt } from 'node:crypto';
import { roundMs } from '../evidence.js';
import { ProbeFailure, classify, type FailureCode } from '../failure.js';
import {
  TRANSPORT_UDP,
  channelNumber,
  getLifetime,
  getSoftware,
  getXorMappedAddress,
  getXorRelayedAddress,
  lifetime,
  requestedTransport,
  xorPeerAddress,
  type TransportAddress,
} from '../protocol/stun-attributes.js';
import type { StunMessage } from '../protocol/stun.js';
import { CHANNEL_MAX, CHANNEL_MIN, METHOD } from '../protocol/turn.js';
import type { TurnCredential } from '../types.js';
import { formatEndpoint } from './address.js';
import type { Retransmission, StunClient } from './stun-client.js';
import { TurnClient } from './turn-client.js';

/**
 * Whether the server may hold an allocation of ours: `maybe` while an authenticated Allocate is
 * out without a definite answer (the answer may have been lost on its way back, and the server
 * then holds an allocation we never heard of). Anything but `none` is released.
 */
export type AllocationState = 'none' | 'maybe' | 'yes';

export interface Allocated {
  relayed: TransportAddress;
  mapped: TransportAddress;
  /** LIFETIME granted, seconds (RFC 8656 §7.3), or null when the server sent none. */
  lifetime: number | null;
  software: string | null;
}

export interface Released {
  released: boolean;
  /** When the release went out, ms on the caller's clock, and how long it took. */
  atMs: number;
  durationMs: number;
  /** Why it failed (no answer within the wait, an error response), when it did. */
  error?: FailureCode;
}

const MAX_TEXT = 128;

/**
 * One TURN allocation (RFC 8656) with the long-term credential mechanism of `TurnClient`: the
 * unauthenticated challenge, the authenticated Allocate, permissions, a channel, and the release
 * (Refresh with LIFETIME 0, §8) with a bounded wait. The `turn` phase and media's TURN path both
 * use it, so an allocation whose answer was lost is released by either.
 */
export class TurnAllocation {
  state: AllocationState = 'none';
  readonly session: TurnClient;
  private readonly attributes;

  constructor(
    client: StunClient,
    retransmission: Retransmission,
    credential: TurnCredential,
    opts: { lifetimeSeconds?: number } = {},
  ) {
    this.session = new TurnClient(client, retransmission, credential);
    this.attributes = [requestedTransport(TRANSPORT_UDP), ...(opts.lifetimeSeconds !== undefined ? [lifetime(opts.lifetimeSeconds)] : [])];
  }

  /**
   * RFC 8656 §7.1: Allocate without credentials. Resolves with the allocation when the server needs
   * none, and otherwise (the 401 with REALM and NONCE) with null: `allocate` follows.
   */
  async challenge(signal: AbortSignal): Promise<Allocated | null> {
    const response = await this.session.challenge(this.attributes, signal);
    if (!response) return null;
    this.state = 'yes';
    return allocatedFrom(response);
  }

  /** The authenticated Allocate (after `challenge`); 438 Stale Nonce is retried by the session. */
  async allocate(signal: AbortSignal): Promise<Allocated> {
    this.state = 'maybe';
    let response: StunMessage;
    try {
      response = await this.session.request(METHOD.ALLOCATE, this.attributes, signal);
    } catch (err) {
      // An error response is definite: nothing was allocated. Silence or an abort leaves 'maybe'.
      if (err instanceof ProbeFailure && 'errorCode' in err.evidence) this.state = 'none';
      throw err;
    }
    this.state = 'yes';
    return allocatedFrom(response);
  }

  /** Both steps: what a caller that does not time them apart wants. */
  async open(signal: AbortSignal): Promise<Allocated> {
    return (await this.challenge(signal)) ?? (await this.allocate(signal));
  }

  /** RFC 8656 §9: CreatePermission for a peer's IP (the port is ignored). */
  async permit(peer: TransportAddress, signal: AbortSignal): Promise<void> {
    await this.session.request(METHOD.CREATE_PERMISSION, [xorPeerAddress({ ...peer, port: 0 })], signal);
  }

  /** RFC 8656 §12: binds a channel, chosen at random from the valid range, to a peer (this also installs its permission). */
  async bindChannel(peer: TransportAddress, signal: AbortSignal): Promise<number> {
    const channel = CHANNEL_MIN + randomInt(CHANNEL_MAX - CHANNEL_MIN + 1);
    await this.session.request(METHOD.CHANNEL_BIND, [channelNumber(channel), xorPeerAddress(peer)], signal);
    return channel;
  }

  /**
   * RFC 8656 §8: Refresh with LIFETIME 0 deletes the allocation; waits at most `waitMs` for the
   * answer. Never throws: its outcome is evidence. Does nothing when nothing may be allocated.
   */
  async release(waitMs: number, now: () => number): Promise<Released | null> {
    if (this.state === 'none') return null;
    const done = new AbortController();
    const timer = setTimeout(() => done.abort(new ProbeFailure('generic_timeout_error', `no answer to the release within ${waitMs} ms`)), waitMs);
    const atMs = now();
    try {
      await this.session.request(METHOD.REFRESH, [lifetime(0)], done.signal);
      this.state = 'none';
      return { released: true, atMs, durationMs: roundMs(now() - atMs) };
    } catch (err) {
      return { released: false, atMs, durationMs: roundMs(now() - atMs), error: classify(err).code };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** RFC 8656 §7.3: a success response carries both the relayed and the mapped address. */
function allocatedFrom(response: StunMessage): Allocated {
  const relayed = getXorRelayedAddress(response);
  const mapped = getXorMappedAddress(response);
  const software = getSoftware(response)?.slice(0, MAX_TEXT) ?? null;
  const granted = getLifetime(response) ?? null;
  if (!relayed || !mapped) {
    throw new ProbeFailure('proto_malformed', 'Allocate success without XOR-RELAYED-ADDRESS and XOR-MAPPED-ADDRESS', {
      software,
      lifetime: granted,
      ...(relayed ? { relayedAddress: formatEndpoint(relayed.address, relayed.port) } : {}),
      ...(mapped ? { mappedAddress: formatEndpoint(mapped.address, mapped.port) } : {}),
    });
  }
  return { relayed, mapped, lifetime: granted, software };
}
