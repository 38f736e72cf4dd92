import { isIP } from 'node:net';
import { ProbeFailure } from '../../failure.js';
import { formatEndpoint, parseHostPort } from '../../net/address.js';
import { RFC8489_RETRANSMISSION, StunClient } from '../../net/stun-client.js';
import { TurnAllocation } from '../../net/turn-allocation.js';
import type { DatagramChannel } from '../../net/udp.js';
import { encodeChannelData } from '../../protocol/turn.js';
import type { TurnCredential } from '../../types.js';
import { openDatagram } from '../kit.js';
import type { PhaseContext } from '../types.js';
import type { MediaParams } from './params.js';
import type { ReflectorAddress } from './report.js';

/** One flow of a media phase: the datagrams of one stream out and its echoes back. */
export interface MediaPath {
  /** Hands a packet to the path; false, and nothing sent, once its socket failed or closed. */
  send(packet: Buffer): boolean;
  /** Where datagrams from the reflector go, with their arrival time (performance.now()). */
  onPacket(handler: (data: Buffer, atMs: number) => void): void;
  /** A socket error (ICMP unreachable...) that ended reception, if any. */
  readonly error: unknown;
  /** After a refused send: the error that ended the path. */
  failure(): Promise<unknown>;
  readonly describe: Record<string, unknown>;
  /** Where the reflector listens: the report after the stream goes there on a new socket. */
  readonly reflector: ReflectorAddress;
  close(): Promise<void>;
}

/** UDP straight to a reflector (the target, or another destination of the phase). Counters go to the phase's evidence. */
export async function openDirectPath(ctx: PhaseContext<MediaParams>, address: string, port: number): Promise<MediaPath> {
  const life = new AbortController();
  const channel = await openDatagram(ctx, { address, port, signal: AbortSignal.any([ctx.signal, life.signal]) });
  let handler: (data: Buffer, atMs: number) => void = () => {};
  const path = {
    error: null as unknown,
    describe: { localAddress: formatEndpoint(channel.localAddress, channel.localPort) },
    reflector: { address, port },
    send: (packet: Buffer) => channel.send(packet),
    onPacket: (h: typeof handler) => {
      handler = h;
    },
    failure: () => ended,
    close: async () => {
      life.abort(new ProbeFailure('interrupted', 'media phase finished'));
      channel.close();
    },
  };
  // The channel's one reader: it ends with the error that ended the channel.
  const ended = (async (): Promise<unknown> => {
    try {
      for (;;) {
        const data = await channel.receive();
        handler(data, performance.now());
      }
    } catch (err) {
      if (!life.signal.aborted && !ctx.signal.aborted) path.error = err;
      return err;
    }
  })();
  return path;
}

/**
 * Through a TURN relay (RFC 8656): an allocation of our own (net/turn-allocation.ts, the same
 * client the `turn` phase uses), a channel bound to the reflector (which also installs the
 * permission, §12), then media as ChannelData both ways; the allocation is released at the end,
 * also when its Allocate's answer was lost. The reflector sees the relay as the source.
 */
export async function openTurnPath(ctx: PhaseContext<MediaParams>, address: string, credential: TurnCredential): Promise<MediaPath> {
  const p = ctx.params;
  const peerHp = parseHostPort(p.peer!, 0)!; // the params refuse via: turn without a peer
  const peer = { family: isIP(peerHp.host) === 6 ? ('IPv6' as const) : ('IPv4' as const), address: peerHp.host, port: peerHp.port };
  ctx.evidence.peer = formatEndpoint(peer.address, peer.port);
  const life = new AbortController();
  const signal = AbortSignal.any([ctx.signal, life.signal]);
  // The release must still go out after the phase's own signal fired: the socket lives on `life`.
  const channel = await openDatagram(ctx, { address, port: ctx.endpoint.port, signal: life.signal });
  let number = -1;
  let handler: (data: Buffer, atMs: number) => void = () => {};
  const client = new StunClient({ kind: 'datagram', channel }, life.signal, {
    onChannelData: (ch, data) => {
      if (ch === number) handler(data, performance.now());
    },
  });
  const allocation = new TurnAllocation(client, RFC8489_RETRANSMISSION, credential);
  const describe: Record<string, unknown> = { localAddress: formatEndpoint(channel.localAddress, channel.localPort) };
  // In the evidence from the start: a path that fails to open still says whether its allocation was released.
  ((ctx.evidence.relays ??= []) as Array<Record<string, unknown>>).push(describe);
  const release = async (): Promise<void> => {
    const released = await allocation.release(p.releaseWaitMs, () => ctx.trace.now());
    if (!released) return;
    describe.released = released.released;
    if (released.error) describe.releaseError = released.error;
  };
  const close = async (): Promise<void> => {
    await release();
    client.close();
    life.abort(new ProbeFailure('interrupted', 'media phase finished'));
    channel.close();
  };
  try {
    const allocated = await allocation.open(signal);
    describe.relayedAddress = formatEndpoint(allocated.relayed.address, allocated.relayed.port);
    describe.mappedAddress = formatEndpoint(allocated.mapped.address, allocated.mapped.port);
    // The relay will send to the peer on our behalf: it passes our guard like any destination.
    ctx.guard.assert(peer.address);
    number = await allocation.bindChannel(peer, signal);
    describe.channel = number;
  } catch (err) {
    await close();
    throw err;
  }
  return {
    error: null,
    describe,
    // The report goes straight to the reflector: a new allocation for one question would cost more than it tells.
    reflector: { address: peer.address, port: peer.port },
    // As client.send does, straight on the channel: its answer says whether the datagram left.
    send: (packet) => channel.send(encodeChannelData(number, packet)),
    onPacket: (h) => {
      handler = h;
    },
    failure: () => channelError(channel),
    close,
  };
}

/**
 * The error that ended a channel read by someone else (the TURN client's reader): once a send was
 * refused the channel has ended, and receive() rejects with that error when no datagram is queued.
 */
async function channelError(channel: DatagramChannel): Promise<unknown> {
  for (;;) {
    try {
      await channel.receive();
    } catch (err) {
      return err;
    }
  }
}
