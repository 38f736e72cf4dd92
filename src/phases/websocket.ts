import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import { z } from 'zod';
import { ProbeFailure } from '../failure.js';
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
export const websocketPhase: PhaseDefinition<typeof params> = {
  name: 'websocket',
  params,
  controlPhase: 'tls',
  needs: 'connection',
  async run(ctx) {
    const socket = ctx.state.socket;
    const tcp = ctx.state.tcp;
    const url = ctx.endpoint.url;
    if (!socket || !tcp || !url) throw new ProbeFailure('internal_error', 'websocket phase needs a URL and an open connection');
    ctx.endpointUsed = url;
    ctx.transport = url.startsWith('wss:') ? 'wss' : 'ws';
    const sentBefore = tcp.bytesWritten;
    const readBefore = tcp.bytesRead;
    const headers: Record<string, string> = { 'User-Agent': ctx.settings.userAgent };
    if (ctx.params.origin) headers.Origin = ctx.params.origin;
    const ws = new WebSocket(url, ctx.params.subprotocols ?? [], {
      createConnection: () => socket,
      headers,
      perMessageDeflate: false,
      followRedirects: false,
      // Frames larger than this from a hostile server are refused, not buffered.
      maxPayload: 1 << 20,
    });
    ctx.state.cleanups.push(() => ws.terminate());
    try {
      await upgrade(ws, ctx.signal, ctx.evidence);
    } finally {
      ctx.evidence.bytesSent = tcp.bytesWritten - sentBefore;
      ctx.evidence.bytesReceived = tcp.bytesRead - readBefore;
    }
    ctx.evidence.status = 101;
    ctx.evidence.subprotocol = ws.protocol || null;
    ctx.state.ws = ws;
  },
};

function upgrade(ws: WebSocket, signal: AbortSignal, evidence: Record<string, unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    const done = (fn: () => void): void => {
      signal.removeEventListener('abort', onAbort);
      fn();
    };
    ws.once('upgrade', (res: IncomingMessage) => {
      evidence.server = res.headers.server ?? null;
    });
    ws.once('open', () => done(resolve));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      evidence.status = status;
      evidence.server = res.headers.server ?? null;
      res.resume();
      ws.terminate();
      done(() => reject(new ProbeFailure('ws_bad_status', `WebSocket upgrade refused with HTTP ${status}`, { status })));
    });
    ws.once('error', (err) => done(() => reject(err)));
  });
}
