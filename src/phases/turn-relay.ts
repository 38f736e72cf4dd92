import { randomBytes } from 'node:crypto';
import { roundMs } from '../evidence.js';
import { ProbeFailure } from '../failure.js';
import { abortable } from '../net/abort.js';
import type { StunClient, StunClientHandlers } from '../net/stun-client.js';
import type { DatagramChannel } from '../net/udp.js';
import { getData, getXorPeerAddress, type TransportAddress } from '../protocol/stun-attributes.js';
import { METHOD, encodeChannelData } from '../protocol/turn.js';
import type { Evidence } from '../result.js';

/** Relayed datagrams: 16 random bytes identify this run, one byte which copy it is. */
const TOKEN_LENGTH = 16;
const MAX_COPIES = 255;
/**
 * What came through the relay, kept for the steps that wait on it: a server flooding Data
 * indications or ChannelData must cost neither unbounded memory nor a growing rescan.
 */
const MAX_RELAYED_KEPT = 64;

/** The relay's counts as evidence: datagrams each way on both legs, the peer socket's own counts, the round trip. */
export interface RelayCounts {
  clientSent: number;
  clientReceived: number;
  peerSent: number;
  peerReceived: number;
  peer?: Evidence;
  roundTripMs?: number;
}

/**
 * The data test of the `turn` phase, through an allocation and back with callprobe's own peer
 * socket: the peer's datagram reaching us as a Data indication (`peerToClient`), then ChannelData
 * from us echoed by the peer (`roundTrip`). Each leg repeats its datagram every relayIntervalMs
 * while unanswered and fails with `relay_timeout` after relayWaitMs: the allocation worked, the
 * data did not come through.
 */
export class RelayTest {
  readonly counts: RelayCounts = { clientSent: 0, clientReceived: 0, peerSent: 0, peerReceived: 0 };
  private readonly dataIndications: Array<{ peer: TransportAddress; data: Buffer }> = [];
  private readonly channelData: Array<{ channel: number; data: Buffer; atMs: number }> = [];
  private wake: (() => void) | null = null;

  constructor(
    private readonly params: { relayWaitMs: number; relayIntervalMs: number },
    private readonly signal: AbortSignal,
    private readonly now: () => number,
  ) {}

  /** For the STUN client reading from the server: what the relay delivers to us. */
  readonly handlers: StunClientHandlers = {
    onIndication: (message) => {
      if (message.method !== METHOD.DATA) return;
      const peer = getXorPeerAddress(message);
      const data = getData(message);
      if (!peer || !data) return;
      this.counts.clientReceived++;
      keepBounded(this.dataIndications, { peer, data: Buffer.from(data) });
      this.wake?.();
    },
    onChannelData: (channel, data) => {
      this.counts.clientReceived++;
      keepBounded(this.channelData, { channel, data, atMs: this.now() });
      this.wake?.();
    },
  };

  /** The peer echoes whatever the relay brings it (our ChannelData), so the round trip closes. */
  async echo(peer: DatagramChannel): Promise<void> {
    try {
      for (;;) {
        const datagram = await peer.receive();
        this.counts.peerReceived++;
        peer.send(datagram);
      }
    } catch {
      // closed at the end of the phase
    }
  }

  /** The peer's datagram to the relayed address arrives as a Data indication: its XOR-PEER-ADDRESS is the peer's public address. */
  peerToClient(peer: DatagramChannel): Promise<TransportAddress> {
    const punch = randomBytes(TOKEN_LENGTH);
    return this.waitFor(
      () => this.dataIndications.find((d) => startsWith(d.data, punch))?.peer,
      (copy) => {
        this.counts.peerSent++;
        peer.send(Buffer.concat([punch, Buffer.from([copy])]));
      },
      () => 'peer-to-client',
    );
  }

  /** ChannelData from us to the peer and its echo back; records the round trip of the copy that made it. */
  async roundTrip(client: StunClient, channel: number): Promise<void> {
    const token = randomBytes(TOKEN_LENGTH);
    const sentAt: number[] = [];
    const echoed = await this.waitFor(
      () => this.channelData.find((d) => d.channel === channel && d.data.length === TOKEN_LENGTH + 1 && startsWith(d.data, token)),
      (copy) => {
        sentAt[copy] = this.now();
        this.counts.clientSent++;
        client.send(encodeChannelData(channel, Buffer.concat([token, Buffer.from([copy])]), { stream: client.streamed }));
      },
      // Which leg lost it: the peer saw our data (so the way back failed) or it did not.
      () => (this.counts.peerReceived > 0 ? 'peer-to-client' : 'client-to-peer'),
    );
    this.counts.roundTripMs = roundMs(echoed.atMs - (sentAt[echoed.data[TOKEN_LENGTH]!] ?? echoed.atMs));
  }

  private waitFor<T>(found: () => T | undefined, send: (copy: number) => void, direction: () => string): Promise<T> {
    const { relayWaitMs, relayIntervalMs } = this.params;
    return abortable<T>(this.signal, (resolve, reject) => {
      let copy = 0;
      const check = (): void => {
        const hit = found();
        if (hit !== undefined) resolve(hit);
      };
      this.wake = check;
      const repeat = setInterval(() => {
        if (copy < MAX_COPIES) send(++copy);
      }, relayIntervalMs);
      const deadline = setTimeout(() => {
        const relayDirection = direction();
        reject(new ProbeFailure('relay_timeout', `allocation made, but no relayed data came back within ${relayWaitMs} ms (${relayDirection})`, { relayDirection }));
      }, relayWaitMs);
      send(0);
      check();
      return () => {
        clearInterval(repeat);
        clearTimeout(deadline);
        this.wake = null;
      };
    });
  }
}

function keepBounded<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > MAX_RELAYED_KEPT) list.shift();
}

function startsWith(data: Buffer, prefix: Buffer): boolean {
  return data.length >= prefix.length && data.subarray(0, prefix.length).equals(prefix);
}
