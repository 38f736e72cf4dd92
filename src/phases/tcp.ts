import { z } from 'zod';
import { formatEndpoint } from '../net/address.js';
import { dialTcp } from '../net/dial.js';
import type { PhaseDefinition } from './types.js';

const params = z.object({ port: z.number().int().min(1).max(65535).optional() }).strict();

/**
 * `tcp`: the three-way handshake to the target. Takes the first address the `dns` phase found
 * (or the catalogue's IP literal); every address found stays in the evidence. A SYN that gets no
 * answer is `generic_timeout_error`, an RST is `connection_refused`, ICMP is `*_unreachable`.
 */
export const tcpPhase: PhaseDefinition<typeof params, 'addresses'> = {
  name: 'tcp',
  params,
  controlPhase: 'tcp',
  needs: 'addresses',
  ownAddresses: ['localAddress'],
  async run(ctx, { addresses }) {
    const address = addresses[0];
    const port = ctx.params.port ?? ctx.endpoint.port;
    const endpoint = formatEndpoint(address, port);
    ctx.endpointUsed = endpoint;
    ctx.transport = 'tcp';
    ctx.evidence.addresses = [...addresses];
    const socket = await dialTcp({ address, port, guard: ctx.guard, signal: ctx.signal, trace: ctx.trace });
    ctx.atRunEnd(() => socket.destroy());
    const local = { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    ctx.evidence.localAddress = formatEndpoint(local.address, local.port);
    return { connection: { tcp: socket, stream: socket, ws: null, transport: 'tcp', endpoint, remote: { address, port }, local } };
  },
};
