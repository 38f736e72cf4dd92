import { randomBytes, randomInt } from 'node:crypto';
import { z } from 'zod';
import { ProbeFailure, classify } from '../failure.js';
import { formatEndpoint } from '../net/address.js';
import type { StunClient } from '../net/stun-client.js';
import { roundMs } from '../evidence.js';
import { TurnClient } from '../net/turn-client.js';
import { dialUdp, type DatagramChannel, type DatagramCounts } from '../net/udp.js';
import {
  TRANSPORT_UDP,
  channelNumber,
  getData,
  getLifetime,
  getSoftware,
  getXorMappedAddress,
  getXorPeerAddress,
  getXorRelayedAddress,
  lifetime,
  requestedTransport,
  xorPeerAddress,
  type TransportAddress,
} from '../protocol/stun-attributes.js';
import type { StunMessage } from '../protocol/stun.js';
import { CHANNEL_MAX, CHANNEL_MIN, METHOD, encodeChannelData } from '../protocol/turn.js';
import { needsForTransport, openStunClient, stunTransportParams } from './stun.js';
import type { PhaseContext, PhaseDefinition } from './types.js';

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
    /** Time kept at the end of the phase's timeout to release the allocation (Refresh, lifetime 0). */
    releaseWaitMs: z.number().int().min(100).max(10_000).default(2000),
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

/** Relayed datagrams: 16 random bytes identify this run, one byte which copy it is. */
const TOKEN_LENGTH = 16;
const MAX_COPIES = 255;

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
 * 7. `release`: Refresh with LIFETIME 0 (§8), always, also after a failed step: the phase keeps
 *    `releaseWaitMs` of its timeout for it, so even a timeout releases what it allocated.
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
export const turnPhase: PhaseDefinition<typeof params> = {
  name: 'turn',
  params,
  controlPhase: 'stun',
  needs: 'addresses',
  needsFor: needsForTransport,
  check: (p, { target, timeoutMs, settings }) => {
    if (!settings.turnCredentials?.has(p.credential ?? target)) return `needs credentials "${p.credential ?? target}" in the config's turn section`;
    // The steps get the timeout less releaseWaitMs, and never less than half of it: below this the
    // release could run past the phase's end.
    const least = 2 * p.releaseWaitMs + 200;
    return timeoutMs < least ? `phaseTimeout ${timeoutMs} ms leaves no room to release the allocation (at least ${least} ms for releaseWaitMs ${p.releaseWaitMs})` : null;
  },
  async run(ctx) {
    const p = ctx.params;
    const name = p.credential ?? ctx.target;
    const credential = ctx.settings.turnCredentials?.get(name);
    if (!credential) throw new ProbeFailure('internal_error', `no TURN credentials named "${name}" in the config's turn section`);
    const run = new TurnRun(ctx);
    await run.execute(credential);
  },
};

/**
 * What came through the relay, kept for the steps that wait on it: a server flooding Data
 * indications or ChannelData must cost neither unbounded memory nor a growing rescan.
 */
const MAX_RELAYED_KEPT = 64;

function keepBounded<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > MAX_RELAYED_KEPT) list.shift();
}

class TurnRun {
  private readonly started = performance.now();
  private readonly steps: Record<string, StepTime> = {};
  private readonly relay: DatagramCounts & { clientReceived: number; peerReceived: number; clientSent: number; peerSent: number };
  /** Keeps the sockets open until the release is done, whatever happened to the steps. */
  private readonly life = new AbortController();
  /** Aborts the steps releaseWaitMs before the phase's timeout, or when the run is cancelled. */
  private readonly stepSignal: AbortSignal;
  private readonly budgetTimer: NodeJS.Timeout;
  private readonly dataIndications: Array<{ peer: TransportAddress; data: Buffer }> = [];
  private readonly channelData: Array<{ channel: number; data: Buffer; atMs: number }> = [];
  private wake: (() => void) | null = null;

  constructor(private readonly ctx: PhaseContext<TurnParams>) {
    this.relay = { clientSent: 0, clientReceived: 0, peerSent: 0, peerReceived: 0 };
    ctx.evidence.steps = this.steps;
    ctx.evidence.relay = this.relay;
    const budgetMs = Math.max(ctx.timeoutMs - ctx.params.releaseWaitMs - 100, Math.floor(ctx.timeoutMs / 2));
    const budget = new AbortController();
    this.budgetTimer = setTimeout(
      () =>
        budget.abort(
          new ProbeFailure('generic_timeout_error', `turn: steps not done within ${budgetMs} ms (the rest is kept to release)`, {
            timeoutMs: budgetMs,
          }),
        ),
      budgetMs,
    );
    this.stepSignal = AbortSignal.any([ctx.signal, budget.signal]);
  }

  async execute(credential: { username: string; password: string }): Promise<void> {
    const { ctx } = this;
    const p = ctx.params;
    /** 'maybe': an authenticated Allocate went out without a definite answer, so the server may hold one. */
    let allocation: 'none' | 'maybe' | 'yes' = 'none';
    let session: TurnClient | null = null;
    let peer: DatagramChannel | null = null;
    let client: StunClient | null = null;
    try {
      client = await openStunClient(ctx, this.life.signal, {
        onIndication: (m) => this.onIndication(m),
        onChannelData: (channel, data) => {
          this.relay.clientReceived++;
          keepBounded(this.channelData, { channel, data, atMs: this.now() });
          this.wake?.();
        },
      });
      const c = client;
      session = new TurnClient(c, p, credential);
      const s = session;
      const allocateAttributes = [requestedTransport(TRANSPORT_UDP), ...(p.lifetime !== undefined ? [lifetime(p.lifetime)] : [])];
      let allocated = await this.step('challenge', () => s.challenge(allocateAttributes, this.stepSignal));
      ctx.evidence.realm = s.realm;
      ctx.evidence.passwordAlgorithm = s.algorithm;
      if (allocated) allocation = 'yes';
      else {
        allocation = 'maybe';
        allocated = await this.step('allocate', () => s.request(METHOD.ALLOCATE, allocateAttributes, this.stepSignal)).catch((err: unknown) => {
          if (err instanceof ProbeFailure && 'errorCode' in err.evidence) allocation = 'none'; // refused: nothing to release
          throw err;
        });
        allocation = 'yes';
      }
      const { relayed, mapped } = this.describeAllocation(allocated);

      // Our own public IP is the peer: the server will send to it, so it passes the guard first.
      ctx.guard.assert(mapped.address);
      await this.step('createPermission', () =>
        s.request(METHOD.CREATE_PERMISSION, [xorPeerAddress({ ...mapped, port: 0 })], this.stepSignal),
      );

      const peerCounts: DatagramCounts = {};
      this.relay.peer = peerCounts;
      peer = await dialUdp({ address: relayed.address, port: relayed.port, guard: ctx.guard, signal: this.life.signal, counts: peerCounts });
      const peerChannel = peer;
      ctx.state.cleanups.push(() => peerChannel.close());
      void this.echo(peerChannel);

      const punch = randomBytes(TOKEN_LENGTH);
      const peerAddress = await this.step('peerToClient', () =>
        this.waitFor(
          () => this.dataIndications.find((d) => startsWith(d.data, punch))?.peer,
          (copy) => {
            this.relay.peerSent++;
            peerChannel.send(Buffer.concat([punch, Buffer.from([copy])]));
          },
          () => 'peer-to-client',
        ),
      );
      ctx.evidence.peerAddress = formatEndpoint(peerAddress.address, peerAddress.port);

      ctx.guard.assert(peerAddress.address);
      const channel = CHANNEL_MIN + randomInt(CHANNEL_MAX - CHANNEL_MIN + 1);
      ctx.evidence.channel = channel;
      await this.step('channelBind', () =>
        s.request(METHOD.CHANNEL_BIND, [channelNumber(channel), xorPeerAddress(peerAddress)], this.stepSignal),
      );

      const token = randomBytes(TOKEN_LENGTH);
      const sentAt: number[] = [];
      const echoed = await this.step('roundTrip', () =>
        this.waitFor(
          () => this.channelData.find((d) => d.channel === channel && d.data.length === TOKEN_LENGTH + 1 && startsWith(d.data, token)),
          (copy) => {
            sentAt[copy] = this.now();
            this.relay.clientSent++;
            c.send(encodeChannelData(channel, Buffer.concat([token, Buffer.from([copy])]), { stream: c.streamed }));
          },
          // Which leg lost it: the peer saw our data (so the way back failed) or it did not.
          () => (this.relay.peerReceived > 0 ? 'peer-to-client' : 'client-to-peer'),
        ),
      );
      this.relay.roundTripMs = roundMs(echoed.atMs - (sentAt[echoed.data[TOKEN_LENGTH]!] ?? echoed.atMs));
    } catch (err) {
      ctx.evidence.failedStep ??= Object.entries(this.steps).find(([, v]) => !v.ok)?.[0] ?? null;
      throw err;
    } finally {
      clearTimeout(this.budgetTimer);
      if (session && allocation !== 'none') await this.release(session);
      ctx.evidence.requests = session?.requests ?? 0;
      ctx.evidence.staleNonceRetries = session?.staleNonceRetries ?? 0;
      client?.close();
      peer?.close();
      this.life.abort(new ProbeFailure('interrupted', 'turn phase finished'));
    }
  }

  private describeAllocation(response: StunMessage): { relayed: TransportAddress; mapped: TransportAddress } {
    const { ctx } = this;
    const relayed = getXorRelayedAddress(response);
    const mapped = getXorMappedAddress(response);
    ctx.evidence.software = getSoftware(response)?.slice(0, 128) ?? null;
    ctx.evidence.lifetime = getLifetime(response) ?? null;
    if (relayed) ctx.evidence.relayedAddress = formatEndpoint(relayed.address, relayed.port);
    if (mapped) ctx.evidence.mappedAddress = formatEndpoint(mapped.address, mapped.port);
    // RFC 8656 §7.3: a success response carries both.
    if (!relayed || !mapped) throw new ProbeFailure('proto_malformed', 'Allocate success without XOR-RELAYED-ADDRESS and XOR-MAPPED-ADDRESS');
    return { relayed, mapped };
  }

  /** RFC 8656 §8: Refresh with LIFETIME 0 deletes the allocation. Never throws: its outcome is evidence. */
  private async release(session: TurnClient): Promise<void> {
    const done = new AbortController();
    const timer = setTimeout(
      () => done.abort(new ProbeFailure('generic_timeout_error', `no answer to the release within ${this.ctx.params.releaseWaitMs} ms`)),
      this.ctx.params.releaseWaitMs,
    );
    const atMs = this.now();
    try {
      await session.request(METHOD.REFRESH, [lifetime(0)], done.signal);
      this.steps.release = { atMs, durationMs: roundMs(this.now() - atMs), ok: true };
      this.ctx.evidence.released = true;
    } catch (err) {
      this.steps.release = { atMs, durationMs: roundMs(this.now() - atMs), ok: false };
      this.ctx.evidence.released = false;
      this.ctx.evidence.releaseError = classify(err).code;
    } finally {
      clearTimeout(timer);
    }
  }

  private onIndication(message: StunMessage): void {
    if (message.method !== METHOD.DATA) return;
    const peer = getXorPeerAddress(message);
    const data = getData(message);
    if (!peer || !data) return;
    this.relay.clientReceived++;
    keepBounded(this.dataIndications, { peer, data: Buffer.from(data) });
    this.wake?.();
  }

  /** The peer echoes whatever the relay brings it (our ChannelData), so the round trip closes. */
  private async echo(peer: DatagramChannel): Promise<void> {
    try {
      for (;;) {
        const datagram = await peer.receive();
        this.relay.peerReceived++;
        peer.send(datagram);
      }
    } catch {
      // closed at the end of the phase
    }
  }

  /**
   * Repeats `send` every relayIntervalMs until `found` returns something, and fails with
   * `relay_timeout` after relayWaitMs: the allocation worked, the data did not come through.
   */
  private waitFor<T>(found: () => T | undefined, send: (copy: number) => void, direction: () => string): Promise<T> {
    const { relayWaitMs, relayIntervalMs } = this.ctx.params;
    return new Promise<T>((resolve, reject) => {
      let copy = 0;
      const finish = (fn: () => void): void => {
        clearInterval(repeat);
        clearTimeout(deadline);
        this.wake = null;
        this.stepSignal.removeEventListener('abort', onAbort);
        fn();
      };
      const check = (): void => {
        const hit = found();
        if (hit !== undefined) finish(() => resolve(hit));
      };
      const onAbort = (): void => finish(() => reject(this.stepSignal.reason));
      if (this.stepSignal.aborted) return onAbort();
      this.stepSignal.addEventListener('abort', onAbort, { once: true });
      this.wake = check;
      const repeat = setInterval(() => {
        if (copy < MAX_COPIES) send(++copy);
      }, relayIntervalMs);
      const deadline = setTimeout(
        () =>
          finish(() =>
            reject(
              new ProbeFailure('relay_timeout', `allocation made, but no relayed data came back within ${relayWaitMs} ms (${direction()})`, {
                relayDirection: direction(),
              }),
            ),
          ),
        relayWaitMs,
      );
      send(0);
      check();
    });
  }

  private async step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const atMs = this.now();
    try {
      const result = await fn();
      this.steps[name] = { atMs, durationMs: roundMs(this.now() - atMs), ok: true };
      return result;
    } catch (err) {
      this.steps[name] = { atMs, durationMs: roundMs(this.now() - atMs), ok: false };
      throw err;
    }
  }

  private now(): number {
    return roundMs(performance.now() - this.started);
  }
}

function startsWith(data: Buffer, prefix: Buffer): boolean {
  return data.length >= prefix.length && data.subarray(0, prefix.length).equals(prefix);
}
