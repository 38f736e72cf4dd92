import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closedPort, tcpServer, type Running } from '../helpers/servers.js';
import { runOnce, specFor } from '../helpers/spec.js';

describe('tcp phase on loopback', () => {
  let server: Running;
  beforeAll(async () => {
    server = await tcpServer('echo');
  });
  afterAll(() => server.close());

  it('connects and reports the endpoint and local address', async () => {
    const run = await runOnce(specFor({ endpoint: { host: '127.0.0.1', port: server.port }, phases: ['tcp'] }));
    expect(run.failure).toBeNull();
    const [tcp] = run.phases;
    expect(tcp).toMatchObject({ phase: 'tcp', endpoint: `127.0.0.1:${server.port}`, transport: 'tcp', ok: true, failure: null });
    expect(tcp!.evidence.addresses).toEqual(['127.0.0.1']);
    expect(tcp!.evidence.localAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(tcp!.durationMs).toBeGreaterThan(0);
  });

  it('reports an RST to the SYN as connection_refused', async () => {
    const port = await closedPort();
    const run = await runOnce(specFor({ endpoint: { host: '127.0.0.1', port }, phases: ['tcp'] }));
    expect(run.failure).toBe('connection_refused');
    expect(run.failedPhase).toBe('tcp');
    expect(run.phases[0]!.evidence.error).toBe('ECONNREFUSED');
  });

  it('refuses a destination outside the allowlist with policy_denied and sends nothing', async () => {
    const run = await runOnce(specFor({ endpoint: { host: '127.0.0.1', port: server.port }, phases: ['tcp', 'tls'] }), { allow: ['198.18.0.0/15'] });
    expect(run.failure).toBe('policy_denied');
    expect(run.failedPhase).toBe('tcp');
    expect(run.phases[0]!.evidence).toMatchObject({ deniedAddress: '127.0.0.1', rule: 'special-purpose 127.0.0.0/8 (loopback)' });
    expect(run.phases[1]).toMatchObject({ phase: 'tls', skipped: true, ok: false, failure: null });
  });
});
