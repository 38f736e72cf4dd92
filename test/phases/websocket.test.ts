import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLabCa, type LabCa } from '../lab/ca.js';
import { wsServer, type Running } from '../helpers/servers.js';
import { runOnce, specFor } from '../helpers/spec.js';

describe('websocket phase on loopback', () => {
  let dir: string;
  let ca: LabCa;
  let plain: Running;
  let secure: Running;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-ws-'));
    ca = await createLabCa(join(dir, 'ca'));
    const cert = await ca.issue(['ws.lab.test'], { ips: ['127.0.0.1'] });
    plain = await wsServer({ refuseStatus: 403 });
    secure = await wsServer({ tls: { cert: cert.certPem, key: cert.keyPem } });
  }, 60_000);
  afterAll(async () => {
    await plain.close();
    await secure.close();
    await ca.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('upgrades over plain TCP with the offered subprotocol', async () => {
    const url = `ws://127.0.0.1:${plain.port}/apiws`;
    const run = await runOnce(specFor({ endpoint: { host: '127.0.0.1', port: plain.port, url }, phases: [{ websocket: { subprotocols: ['binary'] } }] }));
    expect(run.failure).toBeNull();
    expect(run.phases.map((p) => p.phase)).toEqual(['tcp', 'websocket']);
    expect(run.phases[1]).toMatchObject({ endpoint: url, transport: 'ws', ok: true });
    expect(run.phases[1]!.evidence).toMatchObject({ status: 101, subprotocol: 'binary' });
  });

  it('upgrades over TLS: tcp, tls and websocket timed separately on one connection', async () => {
    const url = `wss://ws.lab.test:${secure.port}/ws/chat`;
    const spec = specFor({ endpoint: { host: '127.0.0.1', port: secure.port, url, sni: 'ws.lab.test' }, phases: [{ websocket: { origin: 'https://web.whatsapp.com' } }] });
    const run = await runOnce(spec, { settings: { extraCa: [ca.caCertPem] } });
    expect(run.failure).toBeNull();
    expect(run.phases.map((p) => [p.phase, p.ok])).toEqual([
      ['tcp', true],
      ['tls', true],
      ['websocket', true],
    ]);
    expect(run.phases[2]!.transport).toBe('wss');
  });

  it('reports a refused upgrade as ws_bad_status with the HTTP status', async () => {
    const url = `ws://127.0.0.1:${plain.port}/refuse`;
    const run = await runOnce(specFor({ endpoint: { host: '127.0.0.1', port: plain.port, url }, phases: ['websocket'] }));
    expect(run.failure).toBe('ws_bad_status');
    expect(run.failedPhase).toBe('websocket');
    expect(run.phases[1]!.evidence).toMatchObject({ status: 403, server: 'lab' });
  });
});
