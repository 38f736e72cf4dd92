import { z } from 'zod';
import { roundMs } from '../evidence.js';
import { ProbeFailure } from '../failure.js';
import { formatEndpoint } from '../net/address.js';
import type { StunClient } from '../net/stun-client.js';
import { TurnAllocation, type Allocated } from '../net/turn-allocation.js';
import type { DatagramChannel } from '../net/udp.js';
import type { TurnCredential } from '../types.js';
import { checkedSetting, openDatagram } from './kit.js';
import { needsForTransport, openStunClient, stunTransportParams, type StunTransportNeeds } from './stun-transport.js';
import { turnCredentialName, turnCredentialProblem, turnReleaseParams } from './turn-params.js';
import { RelayTest } from './turn-relay.js';
import type { AddressesInput, ConnectionInput, PhaseContext, PhaseDefinition } from './types.js';

const params = z
  .object({
    /** How we reach the TURN server (UDP, or over `tcp`/`tls`, RFC 8656 §3.1) and the retransmission timer; the relay is UDP either way. */
    ...stunTransportParams,
    /** Name of the config's `turn` entry whose credentials to use; default: the target's name. */
    credential: z.string().min(1).optional(),
    /** How long each direction of relayed data may take before `relay_timeout`. */
    relayWaitMs: z.number().int().min(100).max(30_000).default(3000),
    /** Relayed test datagrams are repeated this often while unanswered (UDP loses packets). */
    relayIntervalMs: z.number().int().min(20).max(5000).default(250),
    ...turnReleaseParams,
    /** LIFETIME to ask for in Allocate, seconds (RFC 8656 §7.1); the server's default when absent. */
    lifetime: z.number().int().min(1).max(3600).optional(),
  })
  .strict();

type TurnParams = z.infer<typeof params>;

interface StepTime {
  /** ms after the phase started. */
  atMs: number;
  durationMs: number;
  ok: boolean;
}

/**
 * `turn`: a whole relay path through a TURN server (RFC 8656), without any other party:
 *
 * 1. `challenge`: Allocate without credentials, expecting 401 with REALM and NONCE (§7.1);
 * 2. `allocate`: Allocate with the long-term credentials (438 Stale Nonce retried): the relayed
 *    address and our mapped (server-reflexive) address come back;
 * 3. `createPermission` for our own public IP, the mapped address (§9);
 * 4. `peerToClient`: a second UDP socket of callprobe, the peer, sends to the relayed address; the
 *    server delivers it to us as a Data indication whose XOR-PEER-ADDRESS is the peer's public
 *    transport address (learning it this way works behind any NAT: the peer's own packet opened
 *    its NAT binding towards the relay);
 * 5. `channelBind` a channel to that address (§11);
 * 6. `roundTrip`: ChannelData from us, relayed to the peer, echoed back by the peer, relayed to us;
 * 7. `release`: Refresh with LIFETIME 0 (§8), always, also after a failed step and after an
 *    Allocate whose answer never came: the phase keeps `releaseWaitMs` of its timeout for it.
 *
 * The peer's packets go to the relayed address, and the server is asked to send to the peer's
 * address: both pass the safety guard first. Assumes the peer's public IP is the mapped address's
 * (one host behind one NAT); a NAT that maps two sockets of one host to different public IPs
 * would show as `relay_timeout` at `peerToClient`.
 *
 * Control: `stun`. A TURN server in the config is the volunteer's own, so there is no TURN
 * control: a failure here counts as `blocked` only when a generic STUN server answered in the
 * same cycle (the UDP path to the outside worked). Credentials never appear in evidence.
 */
export const turnPhase: PhaseDefinition<typeof params, StunTransportNeeds> = {
  name: 'turn',
  params,
  controlPhase: 'stun',
  path: 'calls',
  needs: 'addresses',
  needsFor: needsForTransport,
  // Our socket, our public address as the server saw it, our allocation, our peer socket's public address.
  ownAddresses: ['localAddress', 'mappedAddress', 'relayedAddress', 'peerAddress'],
  check: (p, { target, timeoutMs, settings }) => {
    const credentials = turnCredentialProblem(p, target, settings);
    if (credentials) return credentials;
    // The steps get the timeout less releaseWaitMs, and never less than half of it: below this the
    // release could run past the phase's end.
    const least = 2 * p.releaseWaitMs + 200;
    return timeoutMs < least ? `phaseTimeout ${timeoutMs} ms leaves no room to release the allocation (at least ${least} ms for releaseWaitMs ${p.releaseWaitMs})` : null;
  },
  async run(ctx, input) {
    const credential = checkedSetting(ctx.settings.turnCredentials?.get(turnCredentialName(ctx.params, ctx.target)), 'the TURN credentials');
    await new TurnRun(ctx).execute(input, credential);
  },
};

/** One run of the phase: the steps timed one by one, the allocation released whatever happened. */
class TurnRun {
  private readonly steps: Record<string, StepTime> = {};
  /** The sockets live until the release is done, past the steps' budget. */
  private readonly life = new AbortController();
  private readonly stepSignal: AbortSignal;
  private readonly budgetTimer: NodeJS.Timeout;
  private readonly relay: RelayTest;

  constructor(private readonly ctx: PhaseContext<TurnParams>) {
    const budgetMs = Math.max(ctx.timeoutMs - ctx.params.releaseWaitMs - 100, Math.floor(ctx.timeoutMs / 2));
    const budget = new AbortController();
    this.budgetTimer = setTimeout(
      () => budget.abort(new ProbeFailure('generic_timeout_error', `turn: steps not done within ${budgetMs} ms (the rest is kept to release)`, { timeoutMs: budgetMs })),
      budgetMs,
    );
    this.stepSignal = AbortSignal.any([ctx.signal, budget.signal]);
    this.relay = new RelayTest(ctx.params, this.stepSignal, () => ctx.trace.now());
    ctx.evidence.steps = this.steps;
    ctx.evidence.relay = this.relay.counts;
  }

  async execute(input: AddressesInput | ConnectionInput, credential: TurnCredential): Promise<void> {
    const { ctx, relay } = this;
    const p = ctx.params;
    let allocation: TurnAllocation | null = null;
    let client: StunClient | null = null;
    let peer: DatagramChannel | null = null;
    try {
      const c = (client = await openStunClient(ctx, input, this.life.signal, relay.handlers));
      const a = (allocation = new TurnAllocation(c, p, credential, p.lifetime !== undefined ? { lifetimeSeconds: p.lifetime } : {}));
      const challenged = await this.step('challenge', () => a.challenge(this.stepSignal));
      ctx.evidence.realm = a.session.realm;
      ctx.evidence.passwordAlgorithm = a.session.algorithm;
      const { relayed, mapped } = this.describe(challenged ?? (await this.step('allocate', () => a.allocate(this.stepSignal))));

      // Our own public IP is the peer: the server will send to it, so it passes the guard first.
      ctx.guard.assert(mapped.address);
      await this.step('createPermission', () => a.permit(mapped, this.stepSignal));

      relay.counts.peer = {};
      const peerChannel = (peer = await openDatagram(ctx, { ...relayed, into: relay.counts.peer, signal: this.life.signal }));
      void relay.echo(peerChannel);
      const peerAddress = await this.step('peerToClient', () => relay.peerToClient(peerChannel));
      ctx.evidence.peerAddress = formatEndpoint(peerAddress.address, peerAddress.port);

      ctx.guard.assert(peerAddress.address);
      const channel = await this.step('channelBind', () => a.bindChannel(peerAddress, this.stepSignal));
      ctx.evidence.channel = channel;
      await this.step('roundTrip', () => relay.roundTrip(c, channel));
    } catch (err) {
      ctx.evidence.failedStep ??= Object.entries(this.steps).find(([, v]) => !v.ok)?.[0] ?? null;
      throw err;
    } finally {
      clearTimeout(this.budgetTimer);
      const released = await allocation?.release(p.releaseWaitMs, () => ctx.trace.now());
      if (released) {
        this.steps.release = { atMs: released.atMs, durationMs: released.durationMs, ok: released.released };
        ctx.evidence.released = released.released;
        if (released.error) ctx.evidence.releaseError = released.error;
      }
      ctx.evidence.requests = allocation?.session.requests ?? 0;
      ctx.evidence.staleNonceRetries = allocation?.session.staleNonceRetries ?? 0;
      client?.close();
      peer?.close();
      this.life.abort(new ProbeFailure('interrupted', 'turn phase finished'));
    }
  }

  private describe(allocated: Allocated): Allocated {
    const { evidence } = this.ctx;
    evidence.software = allocated.software;
    evidence.lifetime = allocated.lifetime;
    evidence.relayedAddress = formatEndpoint(allocated.relayed.address, allocated.relayed.port);
    evidence.mappedAddress = formatEndpoint(allocated.mapped.address, allocated.mapped.port);
    return allocated;
  }

  private async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const atMs = this.ctx.trace.now();
    try {
      const result = await fn();
      this.steps[name] = { atMs, durationMs: roundMs(this.ctx.trace.now() - atMs), ok: true };
      return result;
    } catch (err) {
      this.steps[name] = { atMs, durationMs: roundMs(this.ctx.trace.now() - atMs), ok: false };
      throw err;
    }
  }
}
