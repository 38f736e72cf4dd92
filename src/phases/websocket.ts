import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import { z } from 'zod';
import { ProbeFailure, failureOf } from '../failure.js';
import { abortable } from '../net/abort.js';
import { absorbErrors, wrapConnection } from '../net/connection.js';
import type { Evidence } from '../result.js';
import type { PhaseDefinition } from './types.js';

const params = z
  .object({
    /** Sec-WebSocket-Protocol values to offer, e.g. [binary] for Telegram. */
    subprotocols: z.array(z.string().min(1)).optional(),
    /** The Origin header, e.g. https://web.whatsapp.com (WhatsApp Web refuses others). */
    origin: z.string().url().optional(),
  })
  .strict();

/**
 * `websocket`: the HTTP Upgrade over the already open TCP or TLS connection (so `tcp` and `tls`
 * were timed on their own). A refused upgrade is `ws_bad_status` with the HTTP status.
 */
export const websocketPhase: PhaseDefinition<typeof params, 'connection'> = {
  name: 'websocket',
  params,
  controlPhase: 'tls',
  needs: 'connection',
  check: (_p, { endpoint }) => (endpoint.url ? null : 'needs a ws:// or wss:// url on the target'),
  async run(ctx, { connection }) {
    const url = ctx.endpoint.url!; // the check made the plan insist on it
    const transport = url.startsWith('wss:') ? 'wss' : 'ws';
    ctx.endpointUsed = url;
    ctx.transport = transport;
    ctx.trace.wire(connection.tcp);
    const headers: Record<string, string> = { 'User-Agent': ctx.settings.userAgent };
    if (ctx.params.origin) headers.Origin = ctx.params.origin;
    const ws = new WebSocket(url, ctx.params.subprotocols ?? [], {
      createConnection: () => connection.stream,
      headers,
      perMessageDeflate: false,
      followRedirects: false,
      // Frames larger than this from a hostile server are refused, not buffered.
      maxPayload: 1 << 20,
    });
    ctx.atRunEnd(() => ws.terminate());
    absorbErrors(ws);
    try {
      await upgrade(ws, ctx.signal, ctx.evidence);
    } finally {
      ctx.trace.settle();
    }
    ctx.evidence.status = 101;
    ctx.evidence.subprotocol = ws.protocol || null;
    return { connection: wrapConnection(connection, { ws, transport, endpoint: url }) };
  },
};

function upgrade(ws: WebSocket, signal: AbortSignal, evidence: Evidence): Promise<void> {
  return abortable<void>(signal, (resolve, reject) => {
    ws.once('upgrade', (res: IncomingMessage) => {
      evidence.server = res.headers.server ?? null;
    });
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      evidence.status = status;
      evidence.server = res.headers.server ?? null;
      res.resume();
      ws.terminate();
      reject(new ProbeFailure('ws_bad_status', `WebSocket upgrade refused with HTTP ${status}`, { status }));
    });
    const onError = (err: Error): void => reject(failureOf(err, 'read'));
    ws.once('error', onError);
    return () => ws.off('error', onError);
  });
}
