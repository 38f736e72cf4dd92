/**
 * What phases share to stand on their typed input: a conversation over a connection, a UDP
 * channel to an address, a setting the plan has already checked. With these a new phase is its
 * codec and little more.
 */
import { ProbeFailure } from '../failure.js';
import { formatEndpoint } from '../net/address.js';
import type { Connection } from '../net/connection.js';
import { openConversation, type Conversation } from '../net/conversation.js';
import { dialUdp, type DatagramChannel } from '../net/udp.js';
import type { Evidence } from '../result.js';
import type { AddressesInput, PhaseContext } from './types.js';

/**
 * Talks over the connection the earlier phases opened: the phase reports that connection's
 * endpoint and transport (its URL and ws/wss under a WebSocket), and its traffic is counted
 * into the phase's evidence.
 */
export function converse(ctx: PhaseContext<unknown, Evidence>, connection: Connection): Conversation {
  ctx.endpointUsed = connection.endpoint;
  ctx.transport = connection.transport;
  return openConversation(connection, ctx.signal, ctx.trace.counter(), ctx.trace);
}

/**
 * The phase's UDP flow to the first address found, on the target's port (or `port`): its endpoint
 * and transport become the phase's, the addresses, our local address and the flow's ledger (every
 * datagram each way with its time) go into evidence, and the channel closes when the run ends.
 */
export async function openUdpFlow(
  ctx: PhaseContext<unknown, Evidence>,
  input: AddressesInput,
  opts: { port?: number; signal?: AbortSignal } = {},
): Promise<DatagramChannel> {
  const address = input.addresses[0];
  const port = opts.port ?? ctx.endpoint.port;
  ctx.endpointUsed = formatEndpoint(address, port);
  ctx.transport = 'udp';
  ctx.evidence.addresses = [...input.addresses];
  const channel = await openDatagram(ctx, { address, port, ledger: true, ...(opts.signal ? { signal: opts.signal } : {}) });
  ctx.evidence.localAddress = formatEndpoint(channel.localAddress, channel.localPort);
  return channel;
}

/** Another UDP socket of the phase (a second flow, a TURN peer), counted into `into` (default the evidence). */
export async function openDatagram(
  ctx: PhaseContext<unknown, Evidence>,
  opts: { address: string; port: number; into?: Evidence; signal?: AbortSignal; ledger?: boolean },
): Promise<DatagramChannel> {
  const channel = await dialUdp({
    address: opts.address,
    port: opts.port,
    guard: ctx.guard,
    signal: opts.signal ?? ctx.signal,
    counter: ctx.trace.counter({ datagrams: true, ledger: opts.ledger ?? false, ...(opts.into ? { into: opts.into } : {}) }),
    trace: ctx.trace,
  });
  ctx.atRunEnd(() => channel.close());
  return channel;
}

/**
 * A setting the phase's `check` made the plan insist on (a key, credentials): present by the time
 * the phase runs, so its absence here is our bug.
 */
export function checkedSetting<T>(value: T | null | undefined, what: string): T {
  if (value === null || value === undefined) throw new ProbeFailure('internal_error', `${what} is missing although the plan checked it`);
  return value;
}

/**
 * The plan does not add `websocket` by itself (its subprotocol and Origin are the catalogue's):
 * a protocol phase on a ws:// or wss:// target without it would write its bytes raw into TLS.
 */
export function websocketBefore(phase: string, planned: { endpoint: { url?: string }; before: readonly string[] }): string | null {
  return planned.endpoint.url && !planned.before.includes('websocket') ? `a ws:// or wss:// target needs a websocket phase before ${phase}` : null;
}
