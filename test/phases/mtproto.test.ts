import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { parseCidr } from '../../src/net/cidr.js';
import { PHASES } from '../../src/phases/index.js';
import { buildPlan, completeChain } from '../../src/plan/index.js';
import type { ProbeSpec } from '../../src/types.js';
import type { PhaseResult } from '../../src/result.js';
import { createLabCa, type LabCa } from '../lab/ca.js';
import { GARBAGE_PAYLOAD, LAB_PQ, buildResPQ, startTelegramDc, type DcEvent, type DcListener, type RunningDc } from '../lab/servers/telegram-dc.js';
import { runOnce, specFor } from '../helpers/spec.js';

/** The lab DC's key fingerprints as the phase reports them (hex of the unsigned value, the page's order). */
const FINGERPRINTS = ['0bc35f3509f7b7a5', 'c3b42b026ce86b21', 'd09d1d85de64fd85'];
/** unencrypted header (20) + resPQ#05162463 (4) + nonce (16) + server_nonce (16) + pq:string (1 + 8 + 3 pad) + Vector<long> of 3 (4 + 4 + 24). */
const RESPQ_LENGTH = 100;
/** req_pq_multi in its unencrypted envelope (core.telegram.org/mtproto/samples-auth_key). */
const REQUEST_LENGTH = 40;

const LISTENERS: Record<string, DcListener> = {
  ok: { kind: 'tcp', host: '127.0.0.1', port: 0, mode: 'ok' },
  garbage: { kind: 'tcp', host: '127.0.0.1', port: 0, mode: 'garbage' },
  wrongNonce: { kind: 'tcp', host: '127.0.0.1', port: 0, mode: 'wrong_nonce' },
  error404: { kind: 'tcp', host: '127.0.0.1', port: 0, mode: 'transport_error' },
  error429: { kind: 'tcp', host: '127.0.0.1', port: 0, mode: 'transport_error', errorCode: -429 },
  close: { kind: 'tcp', host: '127.0.0.1', port: 0, mode: 'close' },
  reset: { kind: 'tcp', host: '127.0.0.1', port: 0, mode: 'reset' },
  silent: { kind: 'tcp', host: '127.0.0.1', port: 0, mode: 'silent' },
  ws: { kind: 'ws', host: '127.0.0.1', port: 0, mode: 'ok', refuse: { '/refuse': 403 } },
  wsErrorFrame: { kind: 'ws', host: '127.0.0.1', port: 0, mode: 'transport_error' },
  wsErrorClose: { kind: 'ws', host: '127.0.0.1', port: 0, mode: 'transport_error', wsErrorAsClose: true },
  wsClose: { kind: 'ws', host: '127.0.0.1', port: 0, mode: 'close' },
};

describe('mtproto phase against an in-process lab DC on loopback', () => {
  let dir: string;
  let ca: LabCa;
  let dc: RunningDc;
  let wssDc: RunningDc;
  const events: DcEvent[] = [];
  const port: Record<string, number> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-mtproto-'));
    ca = await createLabCa(join(dir, 'ca'));
    const cert = await ca.issue(['venus.lab.test'], { ips: ['127.0.0.1'] });
    dc = await startTelegramDc({ listeners: Object.entries(LISTENERS).map(([name, l]) => ({ ...l, name })) }, (e) => events.push(e));
    for (const l of dc.listeners) port[l.name] = l.port;
    wssDc = await startTelegramDc(
      { listeners: [{ kind: 'ws', name: 'wss', host: '127.0.0.1', port: 0, tls: { cert: cert.certPath, key: cert.keyPath } }] },
      (e) => events.push(e),
    );
    port.wss = wssDc.listeners[0]!.port;
  }, 60_000);
  afterAll(async () => {
    await dc.close();
    await wssDc.close();
    await ca.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const tcpSpec = (listener: string, mtproto: Record<string, unknown>, timeoutMs?: number): ProbeSpec =>
    specFor({ endpoint: { host: '127.0.0.1', port: port[listener]! }, phases: [{ mtproto: { dc: 2, ...mtproto } }], ...(timeoutMs ? { timeoutMs } : {}) });
  const wsSpec = (listener: string, path = '/apiws'): ProbeSpec =>
    specFor({
      endpoint: { host: '127.0.0.1', port: port[listener]!, url: `${listener === 'wss' ? 'wss' : 'ws'}://venus.lab.test:${port[listener]}${path}`, sni: 'venus.lab.test' },
      phases: [{ websocket: { subprotocols: ['binary'] } }, { mtproto: { dc: 2 } }],
    });
  const mtprotoOf = (phases: PhaseResult[]): PhaseResult => phases.find((p) => p.phase === 'mtproto')!;
  /** The DC's events for the connection that carried our nonce. */
  const serverSide = async (nonceHex: unknown): Promise<{ request: DcEvent; answer: DcEvent; close: DcEvent }> => {
    const request = events.find((e) => e.event === 'request' && e.nonceHex === nonceHex);
    if (!request) throw new Error(`the DC saw no request with nonce ${String(nonceHex)}`);
    const of = (event: string) => events.find((e) => e.event === event && e.peer === request.peer && e.listener === request.listener);
    for (let i = 0; i < 100 && !of('close'); i++) await new Promise((r) => setTimeout(r, 10));
    return { request, answer: of('answer')!, close: of('close')! };
  };

  it.each([
    { transport: 'abridged', framing: 1 + 1 },
    { transport: 'intermediate', framing: 4 + 4 },
    { transport: 'full', framing: 4 + 4 + 4 },
  ])('gets resPQ for its nonce over the $transport transport', async ({ transport, framing }) => {
    const run = await runOnce(tcpSpec('ok', { transport }));
    expect(run.failure).toBeNull();
    expect(run.phases.map((p) => [p.phase, p.ok, p.transport])).toEqual([
      ['tcp', true, 'tcp'],
      ['mtproto', true, 'tcp'],
    ]);
    const m = mtprotoOf(run.phases);
    expect(m.endpoint).toBe(`127.0.0.1:${port.ok}`);
    // The full transport's answer has no tag; abridged and intermediate send theirs only client to server.
    const answerFraming = transport === 'abridged' ? 1 : transport === 'intermediate' ? 4 : 12;
    expect(m.evidence).toMatchObject({
      mtprotoTransport: transport,
      dc: 2,
      bytesSent: REQUEST_LENGTH + framing,
      bytesReceived: RESPQ_LENGTH + answerFraming,
      pqHex: LAB_PQ.toString('hex'),
      fingerprints: FINGERPRINTS,
      fingerprintCount: 3,
      resPqDeclaredLength: RESPQ_LENGTH - 20,
      resPqBodyLength: RESPQ_LENGTH - 20,
    });
    expect(m.evidence.timeToFirstByteMs).toBeGreaterThan(0);
    const side = await serverSide(m.evidence.nonceHex);
    expect(side.request).toMatchObject({ transport, bytesIn: m.evidence.bytesSent });
    expect(side.answer).toMatchObject({ mode: 'ok', serverNonceHex: m.evidence.serverNonceHex, bytesOut: m.evidence.bytesReceived });
  });

  it('padded intermediate: 0-15 bytes of padding each way, counted exactly as the DC saw them', async () => {
    const run = await runOnce(tcpSpec('ok', { transport: 'padded_intermediate' }));
    expect(run.failure).toBeNull();
    const m = mtprotoOf(run.phases);
    expect(m.evidence.mtprotoTransport).toBe('padded_intermediate');
    const side = await serverSide(m.evidence.nonceHex);
    expect(side.request).toMatchObject({ transport: 'padded_intermediate', bytesIn: m.evidence.bytesSent });
    expect(side.answer).toMatchObject({ serverNonceHex: m.evidence.serverNonceHex, bytesOut: m.evidence.bytesReceived });
    expect(m.evidence.bytesSent).toBeGreaterThanOrEqual(4 + 4 + REQUEST_LENGTH);
    expect(m.evidence.bytesSent).toBeLessThanOrEqual(4 + 4 + REQUEST_LENGTH + 15);
    expect(m.evidence.resPqBodyLength).toBe((m.evidence.bytesReceived as number) - 4 - 20);
  });

  it.each([
    { inner: undefined, expectedInner: 'intermediate' },
    { inner: 'padded_intermediate', expectedInner: 'padded_intermediate' },
  ])('obfuscated2 over $expectedInner: the DC reads the tag and DC id from the 64-byte header', async ({ inner, expectedInner }) => {
    const run = await runOnce(tcpSpec('ok', { transport: 'obfuscated2', ...(inner ? { inner } : {}) }));
    expect(run.failure).toBeNull();
    const m = mtprotoOf(run.phases);
    expect(m.evidence).toMatchObject({ mtprotoTransport: 'obfuscated2', obfuscated2Inner: expectedInner, dc: 2, fingerprints: FINGERPRINTS });
    const side = await serverSide(m.evidence.nonceHex);
    expect(side.request).toMatchObject({ transport: 'obfuscated2', inner: expectedInner, dcId: 2, bytesIn: m.evidence.bytesSent });
    expect(side.answer).toMatchObject({ serverNonceHex: m.evidence.serverNonceHex, bytesOut: m.evidence.bytesReceived });
    if (expectedInner === 'intermediate') {
      expect(m.evidence).toMatchObject({ bytesSent: 64 + 4 + REQUEST_LENGTH, bytesReceived: 4 + RESPQ_LENGTH });
    }
    // Encrypted on the wire: the first bytes back are not the intermediate length 100 (64 00 00 00).
    expect(m.evidence.firstBytesHex).not.toMatch(/^64000000/);
  });

  it('over a WebSocket (ws://): obfuscated2 is the default, messages are one byte stream', async () => {
    const run = await runOnce(wsSpec('ws'));
    expect(run.failure).toBeNull();
    expect(run.phases.map((p) => [p.phase, p.ok, p.transport])).toEqual([
      ['tcp', true, 'tcp'],
      ['websocket', true, 'ws'],
      ['mtproto', true, 'ws'],
    ]);
    const m = mtprotoOf(run.phases);
    expect(m.endpoint).toBe(`ws://venus.lab.test:${port.ws}/apiws`);
    expect(m.evidence).toMatchObject({ mtprotoTransport: 'obfuscated2', obfuscated2Inner: 'intermediate', bytesSent: 108, bytesReceived: 104 });
    expect(run.phases[1]!.evidence.subprotocol).toBe('binary');
    const side = await serverSide(m.evidence.nonceHex);
    expect(side.request).toMatchObject({ listener: 'ws', transport: 'obfuscated2', dcId: 2 });
  });

  it('over a WebSocket over TLS with the lab CA: tcp > tls > websocket > mtproto', async () => {
    const run = await runOnce(wsSpec('wss'), { settings: { extraCa: [ca.caCertPem] } });
    expect(run.failure).toBeNull();
    expect(run.phases.map((p) => [p.phase, p.ok, p.transport])).toEqual([
      ['tcp', true, 'tcp'],
      ['tls', true, 'tls'],
      ['websocket', true, 'wss'],
      ['mtproto', true, 'wss'],
    ]);
    expect(mtprotoOf(run.phases).evidence).toMatchObject({ bytesSent: 108, bytesReceived: 104, fingerprints: FINGERPRINTS });
  });

  it('an answer that is not MTProto: proto_malformed, with the bytes that came back', async () => {
    const run = await runOnce(tcpSpec('garbage', { transport: 'intermediate' }));
    expect(run).toMatchObject({ failure: 'proto_malformed', failedPhase: 'mtproto' });
    const m = mtprotoOf(run.phases);
    // The first 8 bytes read as a little-endian auth_key_id that is not 0.
    const authKeyIdHex = Buffer.from(GARBAGE_PAYLOAD.subarray(0, 8)).reverse().toString('hex');
    expect(m.evidence).toMatchObject({ bytesSent: 48, bytesReceived: 4 + GARBAGE_PAYLOAD.length, authKeyIdHex });
    expect(m.evidence.firstBytesHex).toBe(`20000000${GARBAGE_PAYLOAD.toString('hex')}`);
  });

  it('a resPQ for another nonce: proto_mismatch, with both nonces', async () => {
    const run = await runOnce(tcpSpec('wrongNonce', { transport: 'obfuscated2' }));
    expect(run).toMatchObject({ failure: 'proto_mismatch', failedPhase: 'mtproto' });
    const e = mtprotoOf(run.phases).evidence;
    const inverted = Buffer.from(e.nonceHex as string, 'hex').map((b) => b ^ 0xff);
    expect(e).toMatchObject({ expectedNonceHex: e.nonceHex, receivedNonceHex: Buffer.from(inverted).toString('hex'), bytesReceived: 104 });
  });

  it.each([
    { listener: 'error404', transport: 'intermediate', code: -404, bytesReceived: 8 },
    { listener: 'error404', transport: 'full', code: -404, bytesReceived: 16 },
    { listener: 'error404', transport: 'abridged', code: -404, bytesReceived: 5 },
    { listener: 'error429', transport: 'obfuscated2', code: -429, bytesReceived: 8 },
  ])('transport error $code over $transport: proto_error with the code', async ({ listener, transport, code, bytesReceived }) => {
    const run = await runOnce(tcpSpec(listener, { transport }));
    expect(run).toMatchObject({ failure: 'proto_error', failedPhase: 'mtproto' });
    expect(mtprotoOf(run.phases).evidence).toMatchObject({ transportError: code, transportErrorFramed: true, bytesReceived });
  });

  it('a WebSocket transport error as a frame, or as close 1000 "-404": proto_error either way', async () => {
    const framed = await runOnce(wsSpec('wsErrorFrame'));
    expect(framed).toMatchObject({ failure: 'proto_error', failedPhase: 'mtproto' });
    expect(mtprotoOf(framed.phases).evidence).toMatchObject({ transportError: -404, bytesReceived: 8 });
    const closed = await runOnce(wsSpec('wsErrorClose'));
    expect(closed).toMatchObject({ failure: 'proto_error', failedPhase: 'mtproto' });
    expect(mtprotoOf(closed.phases).evidence).toMatchObject({ transportError: -404, wsCloseCode: 1000, wsCloseReason: '-404', bytesReceived: 0 });
  });

  it('FIN before an answer: eof_error (TCP), and a bare close 1000 is eof_error too (WebSocket)', async () => {
    const tcp = await runOnce(tcpSpec('close', { transport: 'abridged' }));
    expect(tcp).toMatchObject({ failure: 'eof_error', failedPhase: 'mtproto' });
    expect(mtprotoOf(tcp.phases).evidence).toMatchObject({ bytesSent: 42, bytesReceived: 0 });
    const ws = await runOnce(wsSpec('wsClose'));
    expect(ws).toMatchObject({ failure: 'eof_error', failedPhase: 'mtproto' });
    expect(mtprotoOf(ws.phases).evidence).toMatchObject({ wsCloseCode: 1000, wsCloseReason: '', bytesSent: 108 });
  });

  it('RST after the request: connection_reset', async () => {
    const run = await runOnce(tcpSpec('reset', { transport: 'intermediate' }));
    expect(run).toMatchObject({ failure: 'connection_reset', failedPhase: 'mtproto' });
    expect(mtprotoOf(run.phases).evidence).toMatchObject({ error: 'ECONNRESET', bytesSent: 48, bytesReceived: 0 });
  });

  it('no answer: generic_timeout_error at mtproto, and the evidence keeps what was sent', async () => {
    const run = await runOnce(tcpSpec('silent', { transport: 'intermediate' }, 400));
    expect(run).toMatchObject({ failure: 'generic_timeout_error', failedPhase: 'mtproto' });
    expect(run.phases[0]).toMatchObject({ phase: 'tcp', ok: true });
    expect(mtprotoOf(run.phases).evidence).toMatchObject({ timeoutMs: 400, bytesSent: 48, bytesReceived: 0, mtprotoTransport: 'intermediate' });
  });

  it('a refused upgrade fails at websocket and mtproto is skipped', async () => {
    const run = await runOnce(wsSpec('ws', '/refuse'));
    expect(run).toMatchObject({ failure: 'ws_bad_status', failedPhase: 'websocket' });
    expect(run.phases[1]!.evidence.status).toBe(403);
    expect(run.phases[2]).toMatchObject({ phase: 'mtproto', skipped: true });
  });

  it('refuses an unobfuscated transport over a WebSocket before sending anything', async () => {
    const spec = specFor({
      endpoint: { host: '127.0.0.1', port: port.ws!, url: `ws://127.0.0.1:${port.ws}/apiws` },
      phases: [{ websocket: { subprotocols: ['binary'] } }, { mtproto: { transport: 'abridged', dc: 2 } }],
    });
    const run = await runOnce(spec);
    expect(run).toMatchObject({ failure: 'internal_error', failedPhase: 'mtproto' });
    expect(mtprotoOf(run.phases).evidence.bytesSent).toBeUndefined();
  });

  it('refuses a WebSocket target whose catalogue entry forgot the websocket phase', async () => {
    const url = `ws://127.0.0.1:${port.ws}/apiws`;
    const run = await runOnce(specFor({ endpoint: { host: '127.0.0.1', port: port.ws!, url }, phases: [{ mtproto: { dc: 2 } }] }));
    expect(run).toMatchObject({ failure: 'internal_error', failedPhase: 'mtproto' });
    expect(run.phases.map((p) => p.phase)).toEqual(['tcp', 'mtproto']);
    expect(mtprotoOf(run.phases).evidence).toMatchObject({ error: 'mtproto: a ws:// or wss:// target needs a websocket phase before mtproto' });
  });
});

describe('mtproto params and plan', () => {
  const params = PHASES.get('mtproto')!.params;

  it('defaults to obfuscated2 and needs a dc; inner only under obfuscated2', () => {
    expect(params.parse({ dc: 4 })).toEqual({ transport: 'obfuscated2', dc: 4 });
    expect(params.safeParse({}).success).toBe(false);
    expect(params.safeParse({ dc: 0 }).success).toBe(false);
    expect(params.safeParse({ dc: 2, transport: 'abridged', inner: 'intermediate' }).error?.issues[0]).toMatchObject({
      path: ['inner'],
      message: 'inner is only for transport: obfuscated2',
    });
    expect(params.safeParse({ dc: 2, transport: 'obfuscated2', inner: 'abridged' }).success).toBe(false);
    expect(params.safeParse({ dc: 2, transport: 'http' }).success).toBe(false);
  });

  it('implies tcp, never tls, under an IP-literal TCP target (DCs do not speak TLS on 443)', () => {
    const listed = [{ name: 'mtproto', params: { transport: 'obfuscated2', dc: 2 }, timeoutMs: 1000 }];
    expect(completeChain(listed, { host: '149.154.167.51', port: 443 }, PHASES).map((p) => [p.name, p.implied ?? false])).toEqual([
      ['tcp', true],
      ['mtproto', false],
    ]);
  });

  it('under a wss:// target: dns > tcp > tls > websocket > mtproto', () => {
    const listed = [
      { name: 'websocket', params: { subprotocols: ['binary'] }, timeoutMs: 1000 },
      { name: 'mtproto', params: { transport: 'obfuscated2', dc: 2 }, timeoutMs: 1000 },
    ];
    const endpoint = { host: 'venus.web.telegram.org', port: 443, url: 'wss://venus.web.telegram.org/apiws' };
    expect(completeChain(listed, endpoint, PHASES).map((p) => p.name)).toEqual(['dns', 'tcp', 'tls', 'websocket', 'mtproto']);
  });
});

describe('the lab DC answers like the samples-auth_key page', () => {
  it('builds snapshot A\'s resPQ byte for byte, but with the length field matching the 80-byte body', () => {
    // core.telegram.org/mtproto/samples-auth_key, snapshot A (test/protocol/mtproto.test.ts), "2. response resPQ".
    const page = Buffer.from(
      '0000000000000000' + '0174ffe00d0dc366' + '90000000' + '63241605' + 'ac7ec649662ecf3cf3ba991b9d8dabd5' + '6c8d9cf57754ae5a5cb305759a6050d0' +
        '081be363a46f8edfc1000000' + '15c4b51c03000000' + 'a5b7f709355fc30b' + '216be86c022bb4c3' + '85fd64de851d9dd0',
      'hex',
    );
    const built = Buffer.from(
      buildResPQ({
        nonce: page.subarray(24, 40),
        serverNonce: page.subarray(40, 56),
        messageId: page.readBigUInt64LE(8),
      }),
    );
    expect(built.length).toBe(page.length);
    expect(built.readUInt32LE(16)).toBe(80);
    expect(page.readUInt32LE(16)).toBe(0x90); // the page's length field overstates the body it shows
    expect(Buffer.concat([built.subarray(0, 16), built.subarray(20)]).equals(Buffer.concat([page.subarray(0, 16), page.subarray(20)]))).toBe(true);
  });
});

describe('probes/telegram.yaml (computed only: the real DCs are never contacted in tests)', () => {
  const file = join(import.meta.dirname, '..', '..', 'probes', 'telegram.yaml');
  const plan = buildPlan(configSchema.parse({ embeddedCatalogues: false, catalogues: [file], dns: { resolver: '127.0.0.1:53' } }), null);
  const all = plan.specs.filter((s) => s.service === 'telegram');
  // DC targets speak MTProto; the call-server targets are STUN reachability probes (below).
  const specs = all.filter((s) => s.phases.some((p) => p.name === 'mtproto'));
  const mtproto = (s: ProbeSpec) => s.phases.find((p) => p.name === 'mtproto')!.params as { transport: string; inner?: string; dc: number };
  /** tdlib td/telegram/net/ConnectionCreator.cpp get_default_dc_options (production). */
  const DCS: Record<number, { v4: string[]; v6: string; web: string }> = {
    1: { v4: ['149.154.175.50'], v6: '2001:b28:f23d:f001::a', web: 'pluto' },
    2: { v4: ['149.154.167.51', '95.161.76.100'], v6: '2001:67c:4e8:f002::a', web: 'venus' },
    3: { v4: ['149.154.175.100'], v6: '2001:b28:f23d:f003::a', web: 'aurora' },
    4: { v4: ['149.154.167.91'], v6: '2001:67c:4e8:f004::a', web: 'vesta' },
    5: { v4: ['149.154.171.5'], v6: '2001:b28:f23f:f005::a', web: 'flora' },
  };

  it('every target speaks MTProto to the DC its address belongs to', () => {
    expect(specs.length).toBe(61);
    for (const s of specs) {
      const { dc } = mtproto(s);
      const known = DCS[dc]!;
      if (s.endpoint.url) expect(s.endpoint.url).toBe(`wss://${known.web}.web.telegram.org/apiws`);
      else expect([...known.v4, known.v6]).toContain(s.endpoint.host);
    }
  });

  it('covers both address families of every DC on 443, 80 and 5222, and every transport on 443', () => {
    const tcp = specs.filter((s) => !s.endpoint.url);
    for (const [dc, { v4, v6 }] of Object.entries(DCS)) {
      for (const host of [v4[0]!, v6]) {
        const ports = new Set(tcp.filter((s) => s.endpoint.host === host).map((s) => s.endpoint.port));
        expect([...ports].sort(), `DC${dc} ${host}`).toEqual([443, 5222, 80]);
      }
      const on443 = tcp.filter((s) => s.endpoint.host === v4[0] && s.endpoint.port === 443).map((s) => `${mtproto(s).transport}/${mtproto(s).inner ?? ''}`);
      expect(on443.sort()).toEqual(['abridged/', 'full/', 'intermediate/', 'obfuscated2/', 'obfuscated2/padded_intermediate', 'padded_intermediate/']);
    }
  });

  it('TCP targets are tcp > mtproto (no TLS); WebSocket targets offer "binary" and use obfuscated2', () => {
    for (const s of specs) {
      if (s.endpoint.url) {
        expect(s.phases.map((p) => p.name)).toEqual(['dns', 'tcp', 'tls', 'websocket', 'mtproto']);
        expect(s.phases[3]!.params).toEqual({ subprotocols: ['binary'] });
        expect(mtproto(s).transport).toBe('obfuscated2');
      } else {
        expect(s.phases.map((p) => p.name)).toEqual(['tcp', 'mtproto']);
      }
    }
  });

  it('the default plan documented in the file: 6 connections every cycle, 29 hourly, 26 every 6 hours', () => {
    const byInterval = new Map<number, string[]>();
    for (const s of specs) byInterval.set(s.intervalMs, [...(byInterval.get(s.intervalMs) ?? []), s.target]);
    expect(byInterval.get(300_000)!.sort()).toEqual(['dc1', 'dc2', 'dc3', 'dc4', 'dc5', 'ws-dc2']);
    expect(byInterval.get(3_600_000)!.length).toBe(29);
    expect(byInterval.get(21_600_000)!.length).toBe(26);
    expect([...byInterval.keys()].sort((a, b) => a - b)).toEqual([300_000, 3_600_000, 21_600_000]);
    // Connections per 5-minute cycle on average, as the file's top comment says (about 8.8).
    const perCycle = specs.reduce((sum, s) => sum + 300_000 / s.intervalMs, 0);
    expect(perCycle.toFixed(1)).toBe('8.8');
  });

  it('call servers are STUN/UDP reachability targets on 1400 whose timeout covers the retransmission schedule', () => {
    const calls = all.filter((s) => !specs.includes(s) && s.target.startsWith('call-'));
    expect(calls.map((s) => s.target).sort()).toEqual(['call-91-108-13-37', 'call-91-108-17-7', 'call-91-108-9-113']);
    for (const s of calls) {
      expect(s.endpoint.port).toBe(1400);
      expect(s.phases.map((p) => p.name)).toEqual(['stun']);
      expect(s.phases[0]!.params).toMatchObject({ transport: 'udp', purpose: 'relay-reachability', rtoMs: 500, rc: 7, rm: 16 });
      expect(s.phases[0]!.timeoutMs).toBeGreaterThan(39_500);
    }
  });

  it('the call path: TURN reply oracles on UDP 1400 and reflectors on 596-599, all in Telegram\'s ranges, each with its source', () => {
    const callPath = all.filter((s) => s.path === 'calls');
    expect(callPath.length).toBe(10);
    const turn = callPath.filter((s) => s.phases.some((p) => p.name === 'turn-challenge'));
    expect(turn.map((s) => s.target).sort()).toEqual(['turn-91-108-9-100', 'turn-91-108-9-105', 'turn-91-108-9-118']);
    for (const s of turn) {
      expect(s.endpoint.port).toBe(1400);
      expect(s.phases.map((p) => [p.name, (p.params as { transport: string }).transport])).toEqual([['turn-challenge', 'udp']]);
      expect(s.phases[0]!.timeoutMs).toBeGreaterThan(39_500);
    }
    const reflectors = callPath.filter((s) => s.phases.some((p) => p.name === 'tg-reflector'));
    expect(reflectors.map((s) => `${s.endpoint.host}:${s.endpoint.port}`).sort()).toEqual(['91.108.13.10:596', '91.108.17.7:596', '91.108.9.40:597', '91.108.9.89:598']);
    for (const s of reflectors) expect(s.phases[0]!.timeoutMs).toBeGreaterThan(5500);
    // Only the reflector a source shows answering made-up tags is known to answer.
    expect(reflectors.filter((s) => s.answersProbes).map((s) => s.target)).toEqual(['reflector-91-108-13-10-596']);
    const ranges = ['91.108.8.0/22', '91.108.12.0/22', '91.108.16.0/22'].map(parseCidr);
    for (const s of callPath) {
      expect(ranges.some((r) => r.contains(s.endpoint.host)), s.target).toBe(true);
      expect(s.source, s.target).toBeTruthy();
      expect(s.location).toBe('foreign');
    }
  });
});
