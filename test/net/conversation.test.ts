import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classify } from '../../src/failure.js';
import { openConversation } from '../../src/net/conversation.js';
import { connectionOf, counterInto } from '../helpers/net.js';
import { DATA_BEFORE_RST, listenTracked, tcpServer, type Running } from '../helpers/servers.js';

/** A WebSocket server on loopback that misbehaves after the first message, as told by the path. */
async function badWsServer(): Promise<Running> {
  const http = createHttpServer();
  const wss = new WebSocketServer({ noServer: true });
  http.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.once('message', () => {
        if (req.url === '/rst') (socket as Socket).resetAndDestroy();
        // A message, and the RST right behind it: what Node reports as an end of stream.
        else if (req.url === '/message-rst') ws.send(Buffer.alloc(100), () => (socket as Socket).resetAndDestroy());
        // 0x83: FIN + reserved opcode 3, which a client must refuse (RFC 6455 §5.2).
        else if (req.url === '/bad-frame') socket.write(Buffer.from([0x83, 0x00]));
      });
    });
  });
  return listenTracked(http as unknown as import('node:net').Server);
}

async function openWs(port: number, path: string): Promise<{ ws: WebSocket; tcp: Socket }> {
  const tcp = connect(port, '127.0.0.1');
  await once(tcp, 'connect');
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { createConnection: () => tcp });
  await once(ws, 'open');
  return { ws, tcp };
}

describe('conversation over a WebSocket', () => {
  let server: Running;
  beforeAll(async () => {
    server = await badWsServer();
  });
  afterAll(() => server.close());

  it('reports an RST under the WebSocket as connection_reset, not as an orderly close', async () => {
    const { ws, tcp } = await openWs(server.port, '/rst');
    const c = openConversation(connectionOf(tcp, ws), new AbortController().signal, counterInto({}));
    c.send(Buffer.from('hello'));
    const err = await c.receive().catch((e: unknown) => e);
    expect(classify(err)).toMatchObject({ code: 'connection_reset', error: 'ECONNRESET' });
  });

  it('reports an RST right behind a message as connection_reset, though Node reports it as an end of stream', async () => {
    const { ws, tcp } = await openWs(server.port, '/message-rst');
    const c = openConversation(connectionOf(tcp, ws), new AbortController().signal, counterInto({}));
    c.send(Buffer.from('hello'));
    expect((await c.receive()).length).toBe(100);
    const err = await c.receive().catch((e: unknown) => e);
    expect(classify(err)).toMatchObject({ code: 'connection_reset', error: 'ECONNRESET' });
  });

  it("reports the peer's invalid frame as proto_malformed, not as callprobe's bug", async () => {
    const { ws, tcp } = await openWs(server.port, '/bad-frame');
    const c = openConversation(connectionOf(tcp, ws), new AbortController().signal, counterInto({}));
    c.send(Buffer.from('hello'));
    const err = await c.receive().catch((e: unknown) => e);
    expect(classify(err)).toMatchObject({ code: 'proto_malformed', evidence: { error: 'WS_ERR_INVALID_OPCODE' } });
    ws.terminate();
  });
});

describe('conversation over a stream', () => {
  /** What receive() ends with after the server's answer to one hello, and how many bytes came first. */
  async function endOf(behaviour: 'data-rst' | 'fin'): Promise<{ received: number; failure: ReturnType<typeof classify> }> {
    const server = await tcpServer(behaviour);
    const socket = connect(server.port, '127.0.0.1');
    try {
      await once(socket, 'connect');
      const evidence: Record<string, unknown> = {};
      const c = openConversation(connectionOf(socket), new AbortController().signal, counterInto(evidence));
      c.send(Buffer.from('hello'));
      for (;;) {
        const next = await c.receive().catch((e: unknown) => ({ failed: e }));
        if ('failed' in next) return { received: evidence.bytesReceived as number, failure: classify(next.failed) };
      }
    } finally {
      socket.destroy();
      await server.close();
    }
  }

  it('reports an RST right behind data as connection_reset, though Node reports it as an end of stream', async () => {
    // Node 20 on Linux reports this RST as 'end' every time on loopback (test/net/stream-end.test.ts).
    for (let i = 0; i < 5; i++) {
      expect(await endOf('data-rst')).toEqual({
        received: DATA_BEFORE_RST,
        failure: { code: 'connection_reset', error: 'ECONNRESET', evidence: { error: 'ECONNRESET' } },
      });
    }
  });

  it('reports a FIN as eof_error', async () => {
    expect(await endOf('fin')).toEqual({ received: 0, failure: { code: 'eof_error', error: 'connection closed by the peer (FIN)', evidence: {} } });
  });

  it('detaches when its phase ends, so the next phase gets the bytes and the old evidence stays put', async () => {
    const echo = await tcpServer('echo');
    const socket = connect(echo.port, '127.0.0.1');
    await once(socket, 'connect');
    try {
      const first = new AbortController();
      const firstEvidence: Record<string, unknown> = {};
      const a = openConversation(connectionOf(socket), first.signal, counterInto(firstEvidence));
      a.send(Buffer.from('one'));
      expect((await a.receive()).toString()).toBe('one');
      first.abort(new Error('phase finished'));
      socket.write('two'); // echoed while no phase listens
      await new Promise((r) => setTimeout(r, 50));
      const secondEvidence: Record<string, unknown> = {};
      const b = openConversation(connectionOf(socket), new AbortController().signal, counterInto(secondEvidence));
      expect((await b.receive()).toString()).toBe('two');
      expect(firstEvidence).toMatchObject({ bytesSent: 3, bytesReceived: 3 });
      expect(secondEvidence).toMatchObject({ bytesSent: 0, bytesReceived: 3 });
    } finally {
      socket.destroy();
      await echo.close();
    }
  });
});
