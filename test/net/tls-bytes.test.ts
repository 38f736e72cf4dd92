import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLabCa, type LabCa } from '../lab/ca.js';
import { listenTracked, type Running } from '../helpers/servers.js';

/** TLS 1.3 record overhead with an AEAD cipher: 5-byte header, 1 byte of inner content type, 16-byte tag (RFC 8446 §5.2). */
const TLS13_RECORD_OVERHEAD = 22;

/**
 * What Node's byte counters count under TLS, the fact src/phases/stream/flow.ts stands on: a
 * TLSSocket's bytesRead and bytesWritten count decrypted bytes, whole records only; the TCP
 * socket under it counts what crossed the wire (the handshake, record headers and tags), which is
 * what a censor counts.
 */
describe('TLSSocket and its TCP socket count different bytes', () => {
  let dir: string;
  let ca: LabCa;
  let server: Running;
  let fromServer = Buffer.alloc(0);
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-tls-bytes-'));
    ca = await createLabCa(join(dir, 'ca'));
    const cert = await ca.issue(['tls.lab.test']);
    const tls = createServer({ cert: cert.certPem, key: cert.keyPem }, (s) => {
      s.on('error', () => {});
      s.on('data', (d: Buffer) => {
        // On "send": 20000 bytes in one write, which TLS cuts into records of at most 16384.
        if (d.toString() === 'send') s.write((fromServer = Buffer.alloc(20_000, 1)));
      });
    });
    server = await listenTracked(tls as unknown as import('node:net').Server);
  }, 60_000);
  afterAll(async () => {
    await server.close();
    await ca.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  async function open(): Promise<{ tcp: Socket; tls: TLSSocket }> {
    const tcp = connect(server.port, '127.0.0.1');
    await once(tcp, 'connect');
    const tls = tlsConnect({ socket: tcp, servername: 'tls.lab.test', ca: ca.caCertPem });
    await once(tls, 'secureConnect');
    return { tcp, tls };
  }

  it('after the handshake: nothing decrypted either way, the handshake on the TCP socket', async () => {
    const { tcp, tls } = await open();
    expect(tls.getProtocol()).toBe('TLSv1.3');
    expect({ read: tls.bytesRead, written: tls.bytesWritten }).toEqual({ read: 0, written: 0 });
    expect(tcp.bytesRead).toBeGreaterThan(300); // ServerHello, certificate, Finished
    expect(tcp.bytesWritten).toBeGreaterThan(200); // ClientHello, Finished
    tls.destroy();
  });

  it('a write: its bytes in the TLSSocket, one record of them plus 22 on the TCP socket', async () => {
    const { tcp, tls } = await open();
    await new Promise<void>((resolve) => tls.write(Buffer.alloc(10), () => resolve()));
    const before = { tls: tls.bytesWritten, tcp: tcp.bytesWritten };
    await new Promise<void>((resolve) => tls.write(Buffer.alloc(5000), () => resolve()));
    expect({ tls: tls.bytesWritten - before.tls, tcp: tcp.bytesWritten - before.tcp }).toEqual({ tls: 5000, tcp: 5000 + TLS13_RECORD_OVERHEAD });
    tls.destroy();
  });

  it('a read cut inside a record: the TCP socket has every byte that came, the TLSSocket none of that record', async () => {
    // A relay that passes everything until told to cut, then only the first 5000 bytes of the answer.
    let cut = false;
    let passed = 0;
    const relay = await listenTracked(
      createNetServer((client) => {
        const upstream = connect(server.port, '127.0.0.1');
        client.on('error', () => {});
        upstream.on('error', () => {});
        client.on('data', (d: Buffer) => upstream.write(d));
        upstream.on('data', (d: Buffer) => {
          if (!cut) return void client.write(d);
          const n = Math.min(d.length, 5000 - passed);
          if (n > 0) client.write(d.subarray(0, n));
          passed += Math.max(n, 0);
        });
      }),
    );
    try {
      const tcp = connect(relay.port, '127.0.0.1');
      await once(tcp, 'connect');
      const tls = tlsConnect({ socket: tcp, servername: 'tls.lab.test', ca: ca.caCertPem });
      await once(tls, 'secureConnect');
      await new Promise((r) => setTimeout(r, 50)); // the session tickets, before the cut
      const before = tcp.bytesRead;
      cut = true;
      tls.write('send');
      await new Promise((r) => setTimeout(r, 200));
      expect({ tcp: tcp.bytesRead - before, tls: tls.bytesRead }).toEqual({ tcp: 5000, tls: 0 });
      tls.destroy();
    } finally {
      await relay.close();
    }
  });

  it('a read: the decrypted bytes in the TLSSocket, the records (and what else the server sent) on the TCP socket', async () => {
    const { tcp, tls } = await open();
    let plain = 0;
    tls.on('data', (d: Buffer) => (plain += d.length));
    const before = tcp.bytesRead;
    tls.write('send');
    while (plain < 20_000) await once(tls, 'data');
    expect(tls.bytesRead).toBe(fromServer.length);
    // Two records (16384 + 3616), each with its overhead, and the session tickets TLS 1.3 servers send after the handshake.
    expect(tcp.bytesRead - before).toBeGreaterThanOrEqual(20_000 + 2 * TLS13_RECORD_OVERHEAD);
    tls.destroy();
  });
});
