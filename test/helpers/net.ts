import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { Connection } from '../../src/net/connection.js';
import { PhaseTrace, type TrafficCounter } from '../../src/net/trace.js';
import type { Evidence } from '../../src/result.js';

/** A Connection as the tcp (and websocket) phases would hand it on, for tests of the net helpers. */
export function connectionOf(tcp: Socket, ws: WebSocket | null = null): Connection {
  const remote = { address: tcp.remoteAddress ?? '127.0.0.1', port: tcp.remotePort ?? 0 };
  return {
    tcp,
    stream: tcp,
    ws,
    transport: ws ? 'ws' : 'tcp',
    endpoint: `${remote.address}:${remote.port}`,
    remote,
    local: { address: tcp.localAddress ?? '', port: tcp.localPort ?? 0 },
  };
}

/** A traffic counter writing into `evidence`, as a phase's tracer hands it out. */
export function counterInto(evidence: Evidence, opts: { datagrams?: boolean } = {}): TrafficCounter {
  return new PhaseTrace(evidence, { probe: 'test/t', phase: 'test' }).counter(opts);
}
