import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLabCa, type LabCa } from '../lab/ca.js';
import { createServer } from 'node:net';
import { listenTracked, tcpServer, tlsServer, type Running } from '../helpers/servers.js';
import { runOnce, specFor } from '../helpers/spec.js';

describe('tls phase on loopback', () => {
  let dir: string;
  let ca: LabCa;
  let good: Running;
  let wrongName: Running;
  let expired: Running;
  const servers: Running[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-tls-'));
    ca = await createLabCa(join(dir, 'ca'));
    const cert = await ca.issue(['tls.lab.test'], { ips: ['127.0.0.1'] });
    const other = await ca.issue(['other.lab.test']);
    const old = await ca.issue(['tls.lab.test'], { expired: true });
    good = await tlsServer({ cert: cert.certPem, key: cert.keyPem, alpn: ['h2', 'http/1.1'] });
    wrongName = await tlsServer({ cert: other.certPem, key: other.keyPem });
    expired = await tlsServer({ cert: old.certPem, key: old.keyPem });
    servers.push(good, wrongName, expired);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await ca.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const tlsSpec = (port: number, params: Record<string, unknown> = {}) =>
    specFor({ endpoint: { host: '127.0.0.1', port, sni: 'tls.lab.test' }, phases: ['tcp', { tls: params }] });

  it('completes the handshake with the lab CA and records the certificate and ALPN', async () => {
    const run = await runOnce(tlsSpec(good.port, { alpn: ['h2'] }), { settings: { extraCa: [ca.caCertPem] } });
    expect(run.failure).toBeNull();
    const tls = run.phases[1]!;
    expect(tls).toMatchObject({ phase: 'tls', transport: 'tls', ok: true });
    expect(tls.evidence).toMatchObject({ sni: 'tls.lab.test', alpn: 'h2', protocol: 'TLSv1.3' });
    expect(tls.evidence.certificate).toMatchObject({ subject: 'tls.lab.test', issuer: expect.stringContaining('callprobe') });
    expect(tls.evidence.bytesSent).toBeGreaterThan(200);
    expect(tls.evidence.bytesReceived).toBeGreaterThan(500);
  });

  it('checks an IP-literal target without SNI against its IP address', async () => {
    const spec = specFor({ endpoint: { host: '127.0.0.1', port: good.port }, phases: ['tcp', 'tls'] });
    const run = await runOnce(spec, { settings: { extraCa: [ca.caCertPem] } });
    expect(run.failure).toBeNull();
    expect(run.phases[1]!.evidence.sni).toBeNull();
  });

  it('reports a certificate for another name as ssl_invalid_hostname, with the certificate', async () => {
    const run = await runOnce(tlsSpec(wrongName.port), { settings: { extraCa: [ca.caCertPem] } });
    expect(run.failure).toBe('ssl_invalid_hostname');
    expect(run.failedPhase).toBe('tls');
    expect(run.phases[1]!.evidence.error).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(run.phases[1]!.evidence.certificate).toMatchObject({ subject: 'other.lab.test' });
  });

  it('matches names as RFC 6125 §6 says: a wildcard is one whole leftmost label; an IP only an IP address', async () => {
    const wild = await ca.issue(['*.wild.lab.test'], { ips: ['127.0.0.2'] });
    const server = await tlsServer({ cert: wild.certPem, key: wild.keyPem });
    servers.push(server);
    const outcome = async (sni: string | undefined): Promise<string | null> => {
      const endpoint = { host: '127.0.0.1', port: server.port, ...(sni ? { sni } : {}) };
      return (await runOnce(specFor({ endpoint, phases: ['tcp', 'tls'] }), { settings: { extraCa: [ca.caCertPem] } })).failure;
    };
    expect(await outcome('a.wild.lab.test')).toBeNull();
    expect(await outcome('a.b.wild.lab.test')).toBe('ssl_invalid_hostname');
    expect(await outcome('wild.lab.test')).toBe('ssl_invalid_hostname');
    // No SNI on an IP-literal target: checked against the IP, which this certificate does not name.
    expect(await outcome(undefined)).toBe('ssl_invalid_hostname');
  });

  it('reports an unknown CA as ssl_unknown_authority', async () => {
    const run = await runOnce(tlsSpec(good.port));
    expect(run.failure).toBe('ssl_unknown_authority');
    expect(run.phases[1]!.evidence.error).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('reports an expired certificate as ssl_invalid_certificate', async () => {
    const run = await runOnce(tlsSpec(expired.port), { settings: { extraCa: [ca.caCertPem] } });
    expect(run.failure).toBe('ssl_invalid_certificate');
    expect(run.phases[1]!.evidence.error).toBe('CERT_HAS_EXPIRED');
  });

  it('a server whose answer is cut by an RST right behind it: connection_reset, not the end of stream Node reports', async () => {
    // The first 15 bytes of a TLS handshake record that announces 64: the client waits for the rest.
    const partialRecord = Buffer.concat([Buffer.from('1603030040', 'hex'), Buffer.alloc(10)]);
    const server = await listenTracked(
      createServer((s) => {
        s.on('error', () => {});
        s.once('data', () => s.write(partialRecord, () => s.resetAndDestroy()));
      }),
    );
    try {
      for (let i = 0; i < 3; i++) {
        const spec = specFor({ endpoint: { host: '127.0.0.1', port: server.port, sni: 'tls.lab.test' }, phases: ['tcp', 'tls'], timeoutMs: 1000 });
        const run = await runOnce(spec);
        expect(run).toMatchObject({ failure: 'connection_reset', failedPhase: 'tls' });
        expect(run.phases[1]!.evidence).toMatchObject({ error: 'ECONNRESET', bytesReceived: partialRecord.length, failedOperation: 'tls' });
      }
    } finally {
      await server.close();
    }
  });

  it.each([
    ['rst', 'connection_reset'],
    ['fin', 'eof_error'],
    ['silent', 'generic_timeout_error'],
  ] as const)('a server that answers the ClientHello with %s gives %s at tls', async (behaviour, code) => {
    const server = await tcpServer(behaviour);
    try {
      const spec = specFor({ endpoint: { host: '127.0.0.1', port: server.port, sni: 'tls.lab.test' }, phases: ['tcp', 'tls'], timeoutMs: 500 });
      const run = await runOnce(spec);
      expect(run.failure).toBe(code);
      expect(run.failedPhase).toBe('tls');
      expect(run.phases[0]!.ok).toBe(true);
      const hello = Buffer.concat(server.received);
      expect(hello[0]).toBe(0x16); // TLS handshake record: the ClientHello really left
      expect(run.phases[1]!.evidence.bytesSent).toBe(hello.length);
      expect(run.phases[1]!.evidence.bytesReceived).toBe(0);
    } finally {
      await server.close();
    }
  });
});
