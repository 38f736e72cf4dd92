import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { askHowEnded, watchStreamEnd, type StreamEnd } from '../../src/net/stream-end.js';
import { DATA_BEFORE_RST, listenTracked, tcpServer } from '../helpers/servers.js';

/** Connects, says hello, and records what Node reported and what the kernel answered at the end. */
async function endOf(port: number): Promise<{ events: string[]; end: StreamEnd | null; received: number }> {
  const socket: Socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const events: string[] = [];
  let end: Promise<StreamEnd> | null = null;
  let received = 0;
  watchStreamEnd(socket, socket, (answer) => (end = answer));
  socket.on('end', () => events.push('end'));
  socket.on('error', (e: NodeJS.ErrnoException) => events.push(`error ${e.code} ${e.syscall}`));
  const closed = new Promise((resolve) => socket.once('close', resolve));
  socket.write('hello');
  socket.on('data', (d: Buffer) => (received += d.length));
  await closed;
  return { events, end: end ? await end : null, received };
}

describe('how a TCP stream ended (RST or FIN), whatever Node reported', () => {
  it('an RST right behind data: Node reports an end of stream; the kernel says ECONNRESET', async () => {
    const server = await tcpServer('data-rst');
    try {
      for (let i = 0; i < 5; i++) {
        const { events, end, received } = await endOf(server.port);
        expect(received).toBe(DATA_BEFORE_RST);
        // What Node 20 on Linux reports (this is why the kernel is asked), then the answer to the asking.
        expect(events).toEqual(['end', 'error ECONNRESET write']);
        expect(end).toMatchObject({ how: 'rst', error: { code: 'ECONNRESET', syscall: 'write' } });
      }
    } finally {
      await server.close();
    }
  });

  it('a FIN: an end of stream, and the asking puts nothing on the wire', async () => {
    const seen: Buffer[] = [];
    const server = await listenTracked(
      createServer((s) => {
        s.on('error', () => {});
        s.on('data', (d) => seen.push(d));
        s.once('data', () => s.end(Buffer.from('bye')));
      }),
    );
    try {
      const { events, end, received } = await endOf(server.port);
      expect({ events, end, received }).toEqual({ events: ['end'], end: { how: 'fin' }, received: 3 });
      expect(Buffer.concat(seen).toString()).toBe('hello');
    } finally {
      await server.close();
    }
  });

  it('a FIN and then an RST: the kernel’s EPIPE says the reset came after the end', async () => {
    const server = await listenTracked(
      createServer((s) => {
        s.on('error', () => {});
        s.once('data', () => {
          s.end();
          setTimeout(() => s.resetAndDestroy(), 20);
        });
      }),
    );
    // Half-open, so that our side stays writable after the FIN and the question can wait for the RST.
    const socket = connect({ port: server.port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('error', () => {});
    try {
      await once(socket, 'connect');
      socket.write('hello');
      socket.resume();
      await once(socket, 'end');
      await new Promise((r) => setTimeout(r, 100));
      expect(await askHowEnded(socket)).toMatchObject({ how: 'fin_then_rst', error: { code: 'EPIPE', syscall: 'write' } });
    } finally {
      socket.destroy();
      await server.close();
    }
  });
});
