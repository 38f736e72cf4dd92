/**
 * The whatsapp phase against the lab WhatsApp server run in this process on loopback. The server
 * seals its ServerHello with noise-c and signs its chain with libsignal (see its header), so an OK
 * here means callprobe's client agrees with two independent implementations on the wire.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { whatsappPhase } from '../../src/phases/whatsapp.js';
import { loadPlan } from '../../src/plan/index.js';
import { WA_ROOT_PUBLIC_KEY } from '../../src/protocol/wacert.js';
import {
  startWhatsAppServer,
  type RunningWhatsAppServer,
  type WhatsAppListener,
  type WhatsAppServerEvent,
  type WhatsAppServerMode,
} from '../lab/servers/whatsapp-server.js';
import { tcpServer, type Running } from '../helpers/servers.js';
import { runOnce, specFor } from '../helpers/spec.js';

const LOOP = '127.0.0.1';
const HEADER = { magic: 6, dictVersion: 3 };
/** 4-byte header + 3-byte length + HandshakeMessage{clientHello{ephemeral}} (2 + 2 + 32). */
const CLIENT_FIRST_BYTES = 43;

describe('whatsapp phase on loopback', () => {
  let server: RunningWhatsAppServer;
  const events: WhatsAppServerEvent[] = [];
  let fin: Running & { received: Buffer[] };
  let rst: Running & { received: Buffer[] };
  let truncating: Server;

  beforeAll(async () => {
    const tcp = (name: string, mode: WhatsAppServerMode = 'ok', split = false): WhatsAppListener => ({ kind: 'tcp', name, host: LOOP, port: 0, mode, split });
    server = await startWhatsAppServer(
      {
        listeners: [
          tcp('ok'),
          tcp('split', 'ok', true),
          tcp('replay', 'replay'),
          tcp('garbage', 'garbage'),
          tcp('wrong-root', 'wrong-root'),
          tcp('oversized', 'oversized'),
          tcp('silent', 'silent'),
          { kind: 'ws', name: 'ws', host: LOOP, port: 0, split: true, refuse: { '/refuse': 403 } },
        ],
      },
      (e) => events.push(e),
    );
    fin = await tcpServer('fin');
    rst = await tcpServer('rst');
    // Half a frame, then FIN: a ServerHello cut short.
    truncating = createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.end(Buffer.from('0001000a0b0c', 'hex')));
    });
    truncating.listen(0, LOOP);
    await once(truncating, 'listening');
  }, 30_000);
  afterAll(async () => {
    await server.close();
    await fin.close();
    await rst.close();
    truncating.close();
  });

  const port = (name: string): number => server.info.listeners.find((l) => l.name === name)!.port;
  const wa = (extra: Record<string, unknown> = {}) => ({ whatsapp: { header: HEADER, rootKey: server.info.rootKey, ...extra } });
  const overTcp = (p: number, extra?: Record<string, unknown>, timeoutMs?: number) =>
    runOnce(specFor({ endpoint: { host: LOOP, port: p }, phases: [wa(extra)], ...(timeoutMs ? { timeoutMs } : {}) }));
  const eventsOf = (listener: string) => events.filter((e) => e.listener === listener);

  it('completes the first round trip over TCP: static key decrypted, lab chain verified', async () => {
    const run = await overTcp(port('ok'));
    expect(run.failure).toBeNull();
    expect(run.phases.map((p) => [p.phase, p.ok])).toEqual([
      ['tcp', true],
      ['whatsapp', true],
    ]);
    const phase = run.phases[1]!;
    expect(phase).toMatchObject({ endpoint: `${LOOP}:${port('ok')}`, transport: 'tcp' });
    const { serverHello } = server.info.answerBytes;
    expect(phase.evidence).toMatchObject({
      header: '57410603',
      rootKey: server.info.rootKey,
      bytesSent: CLIENT_FIRST_BYTES,
      bytesReceived: serverHello,
      serverHelloBytes: serverHello - 3,
      staticDecrypted: true,
      serverStatic: server.info.staticKey,
      certChain: {
        verified: true,
        failure: null,
        reason: null,
        serials: { intermediate: 7, intermediateIssuer: 0, leaf: 4242, leafIssuer: 7 },
        validity: { intermediate: server.info.chain.validity, leaf: server.info.chain.validity },
      },
    });
    // The frame's 3-byte length leads what came back.
    expect(phase.evidence.firstBytesHex).toMatch(new RegExp(`^${(serverHello - 3).toString(16).padStart(6, '0')}1a`));
    expect(phase.evidence.timeToFirstByteMs).toBeGreaterThan(0);
    expect(eventsOf('ok').find((e) => e.event === 'hello')).toMatchObject({ header: '57410603', helloBytes: 36 });
  });

  it('reassembles a ServerHello that arrives in pieces over TCP', async () => {
    const run = await overTcp(port('split'));
    expect(run.failure).toBeNull();
    expect(run.phases[1]!.evidence).toMatchObject({ bytesReceived: server.info.answerBytes.serverHello, staticDecrypted: true });
  });

  it('speaks over a WebSocket with the Origin header, the ServerHello split across two messages', async () => {
    const url = `ws://${LOOP}:${port('ws')}/ws/chat`;
    const run = await runOnce(
      specFor({ endpoint: { host: LOOP, port: port('ws'), url }, phases: [{ websocket: { origin: 'https://web.whatsapp.com' } }, wa()] }),
    );
    expect(run.failure).toBeNull();
    expect(run.phases.map((p) => [p.phase, p.ok, p.transport])).toEqual([
      ['tcp', true, 'tcp'],
      ['websocket', true, 'ws'],
      ['whatsapp', true, 'ws'],
    ]);
    expect(run.phases[2]).toMatchObject({ endpoint: url });
    expect(run.phases[2]!.evidence).toMatchObject({
      bytesSent: CLIENT_FIRST_BYTES,
      bytesReceived: server.info.answerBytes.serverHello,
      certChain: { verified: true },
    });
    expect(eventsOf('ws').find((e) => e.event === 'upgrade')).toMatchObject({ path: '/ws/chat', origin: 'https://web.whatsapp.com', status: 101 });
  });

  it('a refused upgrade is ws_bad_status at websocket; whatsapp is skipped', async () => {
    const url = `ws://${LOOP}:${port('ws')}/refuse`;
    const run = await runOnce(specFor({ endpoint: { host: LOOP, port: port('ws'), url }, phases: ['websocket', wa()] }));
    expect(run).toMatchObject({ failure: 'ws_bad_status', failedPhase: 'websocket' });
    expect(run.phases[1]!.evidence.status).toBe(403);
    expect(run.phases[2]).toMatchObject({ phase: 'whatsapp', skipped: true });
  });

  it('a ServerHello replayed from another session is proto_mismatch: the static key does not open under our keys', async () => {
    const run = await overTcp(port('replay'));
    expect(run).toMatchObject({ failure: 'proto_mismatch', failedPhase: 'whatsapp' });
    const evidence = run.phases[1]!.evidence;
    expect(evidence).toMatchObject({ staticDecrypted: false, part: 'static', bytesSent: CLIENT_FIRST_BYTES, bytesReceived: server.info.answerBytes.serverHello });
    expect(evidence.certChain).toBeUndefined();
  });

  it('garbage is proto_malformed', async () => {
    const run = await overTcp(port('garbage'));
    expect(run).toMatchObject({ failure: 'proto_malformed', failedPhase: 'whatsapp' });
    expect(run.phases[1]!.evidence).toMatchObject({
      error: 'protobuf: varint longer than 10 bytes',
      bytesReceived: 35,
      firstBytesHex: `000020${'ff'.repeat(32)}`,
      staticDecrypted: false,
    });
  });

  it('a chain signed by another root is cert_chain_invalid, after the static key decrypted', async () => {
    const run = await overTcp(port('wrong-root'));
    expect(run).toMatchObject({ failure: 'cert_chain_invalid', failedPhase: 'whatsapp' });
    expect(run.phases[1]!.evidence).toMatchObject({
      staticDecrypted: true,
      serverStatic: server.info.staticKey,
      certChain: { verified: false, failure: 'cert_chain_invalid', reason: 'intermediate_signature_invalid', serials: { intermediate: 7, leaf: 4242 } },
    });
  });

  it('without rootKey it verifies against WhatsApp\'s published root, which the lab chain fails', async () => {
    const run = await runOnce(specFor({ endpoint: { host: LOOP, port: port('ok') }, phases: [{ whatsapp: { header: HEADER } }] }));
    expect(run).toMatchObject({ failure: 'cert_chain_invalid', failedPhase: 'whatsapp' });
    expect(run.phases[1]!.evidence).toMatchObject({
      rootKey: Buffer.from(WA_ROOT_PUBLIC_KEY).toString('hex'),
      staticDecrypted: true,
      certChain: { reason: 'intermediate_signature_invalid' },
    });
  });

  it('a 16 MB frame length is proto_malformed at once: nothing buffered, the connection closed before the server could push more', async () => {
    const run = await overTcp(port('oversized'));
    expect(run).toMatchObject({ failure: 'proto_malformed', failedPhase: 'whatsapp' });
    const { localAddress } = run.phases[0]!.evidence as { localAddress: string };
    expect(run.phases[1]!.evidence).toMatchObject({
      declaredLength: 0xff_ffff,
      maxFrameSize: 65_536,
      lengthHex: 'ffffff',
      bytesReceived: server.info.answerBytes.oversizedFirst,
    });
    // The server sends 1 KiB, pauses 500 ms, then streams the rest: we hung up within the pause.
    const closed = await waitFor(() => eventsOf('oversized').find((e) => e.event === 'close' && e.peer === localAddress));
    expect(closed).toMatchObject({ bytesIn: CLIENT_FIRST_BYTES, bytesOut: 1024 });
  });

  it('a server that never answers: generic_timeout_error with the ClientHello sent', async () => {
    const run = await overTcp(port('silent'), {}, 300);
    expect(run).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'whatsapp' });
    expect(run.phases[1]!.evidence).toMatchObject({ timeoutMs: 300, bytesSent: CLIENT_FIRST_BYTES, bytesReceived: 0 });
  });

  it('FIN after the ClientHello is eof_error, RST is connection_reset', async () => {
    const closed = await overTcp(fin.port);
    expect(closed).toMatchObject({ failure: 'eof_error', failedPhase: 'whatsapp' });
    expect(closed.phases[1]!.evidence).toMatchObject({ bytesSent: CLIENT_FIRST_BYTES, bytesReceived: 0 });
    expect(fin.received.at(-1)!.subarray(0, 4).toString('hex')).toBe('57410603');
    const reset = await overTcp(rst.port);
    expect(reset).toMatchObject({ failure: 'connection_reset', failedPhase: 'whatsapp' });
    expect(reset.phases[1]!.evidence).toMatchObject({ error: 'ECONNRESET', bytesSent: CLIENT_FIRST_BYTES });
  });

  it('a stream that ends inside the ServerHello frame is eof_error with the partial frame counted', async () => {
    const run = await overTcp((truncating.address() as AddressInfo).port);
    expect(run).toMatchObject({ failure: 'eof_error', failedPhase: 'whatsapp' });
    expect(run.phases[1]!.evidence).toMatchObject({ bytesReceived: 6, partialFrameBytes: 6, firstBytesHex: '0001000a0b0c' });
  });

  it('sends the header bytes the catalogue gives', async () => {
    await overTcp(fin.port, { header: { magic: 5, dictVersion: 2 } });
    expect(fin.received.at(-1)!.subarray(0, 7).toString('hex')).toBe('57410502000024');
  });
});

describe('whatsapp phase params', () => {
  it('requires the header bytes and checks the root key', () => {
    expect(whatsappPhase.params.safeParse({}).success).toBe(false);
    expect(whatsappPhase.params.safeParse({ header: { magic: 256, dictVersion: 3 } }).success).toBe(false);
    expect(whatsappPhase.params.safeParse({ header: HEADER, rootKey: 'abcd' }).success).toBe(false);
    expect(whatsappPhase.params.safeParse({ header: HEADER, extra: 1 }).success).toBe(false);
    expect(whatsappPhase.params.parse({ header: HEADER, rootKey: 'aa'.repeat(32), maxFrameBytes: 4096 })).toEqual({
      header: HEADER,
      rootKey: 'aa'.repeat(32),
      maxFrameBytes: 4096,
    });
  });
});

describe('the WhatsApp catalogue (planned only: never contacted in tests)', () => {
  const specs = loadPlan(null).specs.filter((s) => s.service === 'whatsapp');
  const ids = specs.map((s) => s.target);

  it('has the WebSocket, g.whatsapp.net and e1..e16 on 443 and 5222, each ending in the whatsapp phase', () => {
    const edges = Array.from({ length: 16 }, (_, i) => [`e${i + 1}-443`, `e${i + 1}-5222`]).flat();
    expect(ids).toEqual(['web-ws', 'g-443', 'g-5222', ...edges]);
    for (const spec of specs) expect(spec.phases.at(-1)!.name).toBe('whatsapp');
    expect(specs.find((s) => s.target === 'e7-5222')!.endpoint).toEqual({ host: 'e7.whatsapp.net', port: 5222 });
  });

  it('the WebSocket target is dns > tcp > tls > websocket (Origin web.whatsapp.com) > whatsapp, with the web header', () => {
    const ws = specs.find((s) => s.target === 'web-ws')!;
    expect(ws.endpoint).toEqual({ host: 'web.whatsapp.com', port: 443, url: 'wss://web.whatsapp.com/ws/chat' });
    expect(ws.phases.map((p) => p.name)).toEqual(['dns', 'tcp', 'tls', 'websocket', 'whatsapp']);
    expect(ws.phases[3]!.params).toEqual({ origin: 'https://web.whatsapp.com' });
    expect(ws.phases[4]!.params).toEqual({ header: { magic: 6, dictVersion: 3 } });
  });

  it('native targets speak raw TCP with the catalogue header; edges run at a long interval, so a cycle stays small', () => {
    const g = specs.find((s) => s.target === 'g-443')!;
    expect(g.phases.map((p) => p.name)).toEqual(['dns', 'tcp', 'whatsapp']);
    expect(g.phases[2]!.params).toEqual({ header: { magic: 5, dictVersion: 2 } });
    expect(specs.filter((s) => s.intervalMs === 300_000).map((s) => s.target)).toEqual(['web-ws', 'g-443', 'g-5222']);
    expect(specs.filter((s) => s.target.startsWith('e')).every((s) => s.intervalMs === 3 * 3600_000)).toBe(true);
    // Connections per 5-minute cycle on average: 3 every cycle + 32 edges every 3 hours.
    const perCycle = specs.reduce((n, s) => n + 300_000 / s.intervalMs, 0);
    expect(perCycle).toBeCloseTo(3 + 32 / 36, 6);
  });
});

async function waitFor<T>(find: () => T | undefined, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error('timed out waiting for a server event');
    await new Promise((r) => setTimeout(r, 10));
  }
}
