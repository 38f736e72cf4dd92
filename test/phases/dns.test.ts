import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dnsServer, tcpServer, type Running } from '../helpers/servers.js';
import { runOnce, specFor } from '../helpers/spec.js';

describe('dns phase against a loopback resolver', () => {
  let dns: Running & { queries: string[] };
  let tcp: Running;
  beforeAll(async () => {
    tcp = await tcpServer('echo');
    dns = await dnsServer({
      'ok.lab.test': { A: ['127.0.0.1'], AAAA: ['::1'] },
      'v4only.lab.test': { A: ['127.0.0.2'] },
      'bogon.lab.test': { A: ['10.10.34.35'] },
      'mapped.lab.test': { AAAA: ['::ffff:192.168.1.1'] },
      'servfail.lab.test': { rcode: 'SERVFAIL' },
      'refused.lab.test': { rcode: 'REFUSED' },
      'empty.lab.test': {},
      'drop.lab.test': { drop: true },
    });
  });
  afterAll(async () => {
    await dns.close();
    await tcp.close();
  });
  const resolver = () => ({ resolver: { address: '127.0.0.1', port: dns.port } });
  const resolve = (host: string, phases: Array<string | Record<string, unknown>> = ['dns'], timeoutMs = 1500) =>
    runOnce(specFor({ endpoint: { host, port: tcp.port }, phases, timeoutMs }), { settings: resolver() });

  it('resolves A and AAAA, IPv4 first, and the next phase connects to it', async () => {
    const run = await resolve('ok.lab.test', ['dns', 'tcp']);
    expect(run.failure).toBeNull();
    const dnsPhase = run.phases[0]!;
    expect(dnsPhase).toMatchObject({ phase: 'dns', endpoint: `127.0.0.1:${dns.port}`, transport: 'udp', ok: true });
    expect(dnsPhase.evidence.addresses).toEqual(['127.0.0.1', '::1']);
    expect(dnsPhase.evidence.rcode).toBe('NOERROR');
    expect(run.phases[1]!.endpoint).toBe(`127.0.0.1:${tcp.port}`);
  });

  it('accepts a name with only A records', async () => {
    const run = await resolve('v4only.lab.test');
    expect(run.failure).toBeNull();
    expect(run.phases[0]!.evidence.addresses).toEqual(['127.0.0.2']);
  });

  it('reports NXDOMAIN as dns_nxdomain_error', async () => {
    const run = await resolve('nope.lab.test', ['dns', 'tcp']);
    expect(run.failure).toBe('dns_nxdomain_error');
    expect(run.failedPhase).toBe('dns');
    expect(run.phases[0]!.evidence.rcode).toBe('NXDOMAIN');
    expect(run.phases[1]).toMatchObject({ phase: 'tcp', skipped: true });
  });

  it.each([
    ['servfail.lab.test', 'dns_servfail_error', 'SERVFAIL'],
    ['refused.lab.test', 'dns_refused_error', 'REFUSED'],
    ['empty.lab.test', 'dns_no_answer', 'NOERROR'],
  ])('%s gives %s', async (name, code, rcode) => {
    const run = await resolve(name);
    expect(run.failure).toBe(code);
    expect(run.phases[0]!.evidence.rcode).toBe(rcode);
  });

  it('reports a private answer as dns_bogon_error and never connects to it', async () => {
    const run = await resolve('bogon.lab.test', ['dns', 'tcp']);
    expect(run.failure).toBe('dns_bogon_error');
    expect(run.phases[0]!.evidence).toMatchObject({ bogons: ['10.10.34.35'], rule: 'special-purpose 10.0.0.0/8 (private)' });
    expect(run.phases[1]!.skipped).toBe(true);
  });

  it('sees through an IPv4-mapped bogon', async () => {
    const run = await resolve('mapped.lab.test');
    expect(run.failure).toBe('dns_bogon_error');
  });

  it('retransmits, then times out with generic_timeout_error at dns', async () => {
    const before = dns.queries.filter((q) => q.endsWith('drop.lab.test')).length;
    const spec = specFor({ endpoint: { host: 'drop.lab.test', port: 1 }, phases: [{ dns: { retransmitMs: 200 } }], timeoutMs: 700 });
    const run = await runOnce(spec, { settings: resolver() });
    expect(run.failure).toBe('generic_timeout_error');
    expect(run.failedPhase).toBe('dns');
    // A and AAAA at 0 ms, then again at 200, 400 and 600 ms.
    expect(dns.queries.filter((q) => q.endsWith('drop.lab.test')).length - before).toBe(8);
    expect(run.phases[0]!.evidence.timeoutMs).toBe(700);
  });

  it('refuses a resolver outside the allowlist with policy_denied, and sends it nothing', async () => {
    const before = dns.queries.length;
    const spec = specFor({ endpoint: { host: 'ok.lab.test', port: 1 }, phases: ['dns'] });
    const run = await runOnce(spec, { settings: resolver(), allow: ['198.18.0.0/15'] });
    expect(run.failure).toBe('policy_denied');
    expect(run.phases[0]!.evidence).toMatchObject({ deniedAddress: '127.0.0.1', rule: 'special-purpose 127.0.0.0/8 (loopback)' });
    expect(dns.queries.length).toBe(before);
  });
});
