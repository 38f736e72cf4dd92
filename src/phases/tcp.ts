import { z } from 'zod';
import { ProbeFailure } from '../failure.js';
import { dialTcp } from '../net/dial.js';
import { formatEndpoint } from '../net/address.js';
import type { PhaseDefinition } from './types.js';

const params = z.object({ port: z.number().int().min(1).max(65535).optional() }).strict();

/**
 * `tcp`: the three-way handshake to the target. Takes the first address the `dns` phase found
 * (or the catalogue's IP literal); every address found stays in the evidence. A SYN that gets no
 * answer is `generic_timeout_error`, an RST is `connection_refused`, ICMP is `*_unreachable`.
 */
export const tcpPhase: PhaseDefinition<typeof params> = {
  name: 'tcp',
  params,
  controlPhase: 'tcp',
  needs: 'addresses',
  async run(ctx) {
    const address = ctx.state.addresses?.[0];
    if (address === undefined) throw new ProbeFailure('internal_error', 'tcp phase has no address to connect to');
    const port = ctx.params.port ?? ctx.endpoint.port;
    ctx.endpointUsed = formatEndpoint(address, port);
    ctx.transport = 'tcp';
    ctx.evidence.addresses = ctx.state.addresses;
    const socket = await dialTcp({ address, port, guard: ctx.guard, signal: ctx.signal });
    ctx.state.tcp = socket;
    ctx.state.socket = socket;
    ctx.state.cleanups.push(() => socket.destroy());
    ctx.evidence.localAddress = formatEndpoint(socket.localAddress ?? '', socket.localPort ?? 0);
  },
};
