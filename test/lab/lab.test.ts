import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  applyCensor,
  censorScript,
  clearCensor,
  counters,
  countToServer,
  createLab,
  createLabCa,
  dnsmasqArgs,
  labClient,
  labDecision,
  OutputRing,
  parseCounters,
  parseQueryLog,
  parseSsListening,
  REPO_ROOT,
  startDnsServer,
  startEchoServer,
  sweepStaleLabs,
  ECHO_SERVER_SCRIPT,
  describeLab,
  type Lab,
  type LabCa,
  type LabDnsServer,
  type LabServer,
} from './index.js';

const run = promisify(execFile);
const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex');

async function namespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
}

/** Running, as opposed to gone or a zombie (an orphan's zombie waits for init, here up to ~2 s). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGKILL is delivered asynchronously: poll briefly instead of racing it. */
async function gone(pid: number, withinMs = 3000): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

describe('lab helpers (no root needed)', () => {
  it('runs lab suites as root, skips them otherwise, and fails instead of skipping under CI=true', () => {
    expect(labDecision(null, {})).toBe('run');
    expect(labDecision(null, { CI: 'true' })).toBe('run');
    expect(labDecision('lab tests need root (network namespaces): run `sudo npm test`', {})).toBe('skip');
    expect(labDecision('lab tests need root (network namespaces): run `sudo npm test`', { CI: 'true' })).toBe('fail');
  });

  it('builds one atomic nft transaction that replaces the censor table', () => {
    const script = censorScript(['tcp dport { 443, 5222 } counter drop comment "block"', '', countToServer('198.18.2.2')], {
      countDelivered: ['198.18.2.3'],
    });
    expect(script).toBe(
      [
        'table inet censor {}',
        'delete table inet censor',
        'table inet censor {',
        '  chain forward_filter {',
        '    type filter hook forward priority filter; policy accept;',
        '    tcp dport { 443, 5222 } counter drop comment "block"',
        '    ip daddr 198.18.2.2 counter comment "to:198.18.2.2"',
        '  }',
        '  chain delivered {',
        '    type filter hook postrouting priority 300; policy accept;',
        '    ip daddr 198.18.2.3 counter comment "delivered:198.18.2.3"',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    expect(() => censorScript(['drop } chain evil { type filter hook input priority 0;'])).toThrow(/unbalanced/);
    expect(censorScript(['ip daddr & 255.255.255.0 @lingering drop'], { sets: { lingering: 'type ipv4_addr; flags timeout;' } }).split('\n').slice(2, 5)).toEqual([
      'table inet censor {',
      '  set lingering { type ipv4_addr; flags timeout; }',
      '  chain forward_filter {',
    ]);
    expect(() => censorScript([], { sets: { evil: 'type ipv4_addr; } chain x { type filter hook input priority 0;' } })).toThrow(/plain declaration/);
    expect(() => countToServer('198.18.2.2', 'has "quote"')).toThrow(/plain text/);
  });

  it('reads per-rule counters from nft -j output, keyed by comment', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { rule: { family: 'inet', table: 'censor', chain: 'forward_filter', handle: 3, comment: 'syn', expr: [{ counter: { packets: 2, bytes: 120 } }, { drop: null }] } },
        { rule: { family: 'inet', table: 'censor', chain: 'forward_filter', handle: 4, expr: [{ counter: { packets: 9, bytes: 9 } }] } },
        { rule: { family: 'inet', table: 'censor', chain: 'forward_filter', handle: 5, comment: 'no-counter', expr: [{ drop: null }] } },
      ],
    });
    expect(parseCounters(json)).toEqual({ syn: { packets: 2, bytes: 120, chain: 'forward_filter', handle: 3 } });
  });

  it('parses ss listening sockets, including bracketed IPv6 and device-bound addresses', () => {
    const text = [
      'LISTEN 0      511       198.18.2.2:7000      0.0.0.0:*',
      'LISTEN 0      511             [::]:7443         [::]:*',
      'UNCONN 0      0     127.0.0.53%lo:53        0.0.0.0:*',
    ].join('\n');
    expect(parseSsListening(text)).toEqual([
      { address: '198.18.2.2', port: 7000 },
      { address: '::', port: 7443 },
      { address: '127.0.0.53', port: 53 },
    ]);
  });

  it('keeps the last lines of output, tagged by stream', () => {
    const ring = new OutputRing(2);
    expect(ring.push('stdout', 'a\nb')).toEqual(['a']);
    expect(ring.push('stderr', 'x\n')).toEqual(['x']);
    expect(ring.push('stdout', 'c\n')).toEqual(['bc']);
    expect(ring.text()).toBe('2| x\n1| bc');
  });

  it('maps DNS records to dnsmasq options and parses its query log', () => {
    const args = dnsmasqArgs({
      records: { 'ok.lab.test': ['198.18.2.2', '2001:db8::2'] },
      noAnswer: ['slow.lab.test'],
      address: '198.18.2.2',
      port: 53,
      pidFile: '/tmp/x.pid',
    });
    expect(args).toContain('--host-record=ok.lab.test,198.18.2.2');
    expect(args).toContain('--host-record=ok.lab.test,2001:db8::2');
    expect(args).toContain('--local=/lab.test/');
    expect(args).toContain('--server=/slow.lab.test/127.0.0.1#9');
    expect(() => dnsmasqArgs({ records: { 'a,b': ['1.2.3.4'] }, address: '198.18.2.2', port: 53, pidFile: 'p' })).toThrow(/DNS name/);
    expect(parseQueryLog(['dnsmasq[1]: query[AAAA] ok.lab.test from 198.18.1.2', 'dnsmasq[1]: config ok.lab.test is ::'])).toEqual([
      { type: 'AAAA', name: 'ok.lab.test', from: '198.18.1.2' },
    ]);
  });
});

describeLab('lab plumbing (namespaces, censor, servers)', () => {
  let lab: Lab;
  let ca: LabCa;
  let echo: LabServer;
  let dns: LabDnsServer;

  beforeAll(async () => {
    lab = await createLab({ serverAddresses: ['198.18.2.3'], clientResolver: '198.18.2.2' });
    ca = await createLabCa(lab.tmpDir);
    const [good, expired] = await Promise.all([
      ca.issue(['tls.lab.test'], { ips: [lab.server] }),
      ca.issue(['old.lab.test'], { expired: true }),
    ]);
    [echo, dns] = await Promise.all([
      startEchoServer(lab, {
        listeners: [
          { kind: 'tcp', host: lab.server, port: 7000 },
          { kind: 'tcp', host: '198.18.2.3', port: 7001, greeting: 'hello', echo: false },
          { kind: 'udp', host: lab.server, port: 7002 },
          { kind: 'tls', host: lab.server, port: 7443, cert: good.certPath, key: good.keyPath, alpn: ['h2', 'http/1.1'] },
          { kind: 'tls', host: lab.server, port: 7444, cert: expired.certPath, key: expired.keyPath },
          { kind: 'ws', host: lab.server, port: 7080, refuse: { '/refuse': 403, '/gone': 410 } },
          { kind: 'ws', host: lab.server, port: 7081, tls: { cert: good.certPath, key: good.keyPath } },
        ],
      }),
      startDnsServer(lab, {
        records: { 'ok.lab.test': [lab.server, '2001:db8::2'], 'bogon.lab.test': ['10.1.2.3'] },
        noAnswer: ['slow.lab.test'],
      }),
    ]);
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  afterEach(async () => {
    await clearCensor(lab);
  });

  it('builds client — censor — server with routes, forwarding, and nothing in the host namespace', async () => {
    expect(lab.names.client).toMatch(/^cp-[0-9a-z]+-[0-9a-z]+-client$/);
    for (const ifName of [lab.names.clientIf, lab.names.censorClientIf, lab.names.censorServerIf, lab.names.serverIf]) {
      expect(ifName.length).toBeLessThanOrEqual(15);
    }
    expect(await lab.exec('client', 'ip', ['route', 'show', 'default'])).toContain('via 198.18.1.1');
    expect(await lab.exec('server', 'ip', ['route', 'show', 'default'])).toContain('via 198.18.2.1');
    expect((await lab.exec('censor', 'sysctl', ['-n', 'net.ipv4.ip_forward'])).trim()).toBe('1');
    expect(await lab.exec('server', 'ip', ['-4', '-o', 'addr', 'show', 'dev', lab.names.serverIf])).toMatch(/198\.18\.2\.3\/24/);
    const { stdout: hostLinks } = await run('ip', ['-o', 'link']);
    expect(hostLinks).not.toContain(lab.names.clientIf.slice(0, -2));
  });

  it('carries TCP from the client namespace through the censor to the server, unNATed', async () => {
    const res = await labClient(lab, 'tcp', { host: lab.server, port: 7000, send: 'ping-7000' });
    expect(res).toMatchObject({ ok: true, local: lab.client, receivedHex: hex('ping-7000') });
    const accept = await echo.waitForEvent((e) => e.event === 'accept' && e.listener === `tcp:${lab.server}:7000`);
    expect(accept.peer).toMatch(/^198\.18\.1\.2:\d+$/);
    const greeted = await labClient(lab, 'tcp', { host: '198.18.2.3', port: 7001, 'expect-bytes': 5 });
    expect(greeted).toMatchObject({ ok: true, receivedHex: hex('hello') });
  });

  it('drops SYNs: the connect times out and the rule counted exactly the two SYNs sent in 2 s', async () => {
    await applyCensor(lab, [countToServer(lab.server), 'tcp dport 7000 tcp flags syn counter drop comment "syn"']);
    const accepts = echo.events().filter((e) => e.event === 'accept').length;
    const res = await labClient(lab, 'tcp', { host: lab.server, port: 7000, timeout: 2000 });
    expect(res).toMatchObject({ ok: false, code: 'ETIMEDOUT' });
    const c = await counters(lab);
    // Linux sends the SYN at 0 s and retransmits at 1 s (initial RTO 1 s: RFC 6298 §2.1, TCP_TIMEOUT_INIT in include/net/tcp.h);
    // each SYN is 60 bytes (20 IP + 40 TCP with MSS, SACK-permitted, timestamps, window scale).
    expect(c.syn).toMatchObject({ packets: 2, bytes: 120 });
    expect(c[`to:${lab.server}`]).toMatchObject({ packets: 2, bytes: 120 });
    expect(echo.events().filter((e) => e.event === 'accept').length).toBe(accepts);
  });

  it('answers SYNs with a reset: the connect is refused at once', async () => {
    await applyCensor(lab, 'tcp dport 7000 tcp flags syn counter reject with tcp reset comment "rst"');
    const res = await labClient(lab, 'tcp', { host: lab.server, port: 7000, timeout: 2000 });
    expect(res).toMatchObject({ ok: false, code: 'ECONNREFUSED' });
    expect((await counters(lab)).rst).toMatchObject({ packets: 1 });
  });

  it('replaces the previous scenario atomically and counts only what was delivered', async () => {
    await applyCensor(lab, 'tcp dport 7000 counter drop comment "old"');
    await applyCensor(lab, 'tcp dport 7000 counter drop comment "block-7000"', { countDelivered: [lab.server] });
    const tcp = await labClient(lab, 'tcp', { host: lab.server, port: 7000, timeout: 500 });
    expect(tcp.code).toBe('ETIMEDOUT');
    const udp = await labClient(lab, 'udp', { host: lab.server, port: 7002, count: 3, send: 'ping' });
    expect(udp).toMatchObject({ sent: 3, received: 3 });
    const c = await counters(lab);
    expect(Object.keys(c).sort()).toEqual(['block-7000', `delivered:${lab.server}`]);
    expect(c['block-7000']!.packets).toBeGreaterThanOrEqual(1);
    // Only the three datagrams got through: 20 IP + 8 UDP + 4 payload bytes each.
    expect(c[`delivered:${lab.server}`]).toMatchObject({ packets: 3, bytes: 96 });
  });

  it('resolves configured names, NXDOMAIN inside lab.test, REFUSED outside, and no answer for noAnswer names', async () => {
    const q = (name: string, type = 'A', timeout = 2000) => labClient(lab, 'dns', { server: dns.address, name, type, timeout });
    expect(await q('ok.lab.test')).toEqual({ ok: true, rcode: 'NOERROR', answers: [{ type: 'A', data: lab.server }] });
    expect(await q('ok.lab.test', 'AAAA')).toEqual({ ok: true, rcode: 'NOERROR', answers: [{ type: 'AAAA', data: '2001:db8::2' }] });
    expect(await q('bogon.lab.test')).toEqual({ ok: true, rcode: 'NOERROR', answers: [{ type: 'A', data: '10.1.2.3' }] });
    expect(await q('bogon.lab.test', 'AAAA')).toEqual({ ok: true, rcode: 'NOERROR', answers: [] });
    expect(await q('missing.lab.test')).toEqual({ ok: true, rcode: 'NXDOMAIN', answers: [] });
    expect(await q('example.com')).toEqual({ ok: true, rcode: 'REFUSED', answers: [] });
    expect(await q('slow.lab.test', 'A', 1000)).toEqual({ ok: false, code: 'ETIMEDOUT' });
    expect(dns.queries()).toContainEqual({ type: 'A', name: 'bogon.lab.test', from: lab.client });
  });

  it('points the client namespace system resolver (getaddrinfo) at the lab DNS server', async () => {
    const lookup = (name: string) =>
      lab.exec('client', process.execPath, [
        '-e',
        `require('node:dns').lookup(${JSON.stringify(name)}, { family: 4 }, (e, a) => console.log(e ? e.code : a))`,
      ]);
    expect((await lookup('ok.lab.test')).trim()).toBe(lab.server);
    expect((await lookup('missing.lab.test')).trim()).toBe('ENOTFOUND');
    expect(existsSync(`/etc/netns/${lab.names.client}/resolv.conf`)).toBe(true);
  });

  it('serves TLS with the lab CA: trusted, ALPN, SNI seen; untrusted, expired and wrong-name fail with their codes', async () => {
    const tls = (flags: Record<string, string | number>) => labClient(lab, 'tls', { host: lab.server, ...flags });
    const ok = await tls({ port: 7443, servername: 'tls.lab.test', ca: ca.caCertPath, alpn: 'h2,http/1.1', send: 'over-tls' });
    expect(ok).toMatchObject({ ok: true, authorized: true, alpn: 'h2', protocol: 'TLSv1.3', receivedHex: hex('over-tls') });
    const hs = await echo.waitForEvent((e) => e.event === 'handshake' && e.sni === 'tls.lab.test');
    expect(hs).toMatchObject({ alpn: 'h2', listener: `tls:${lab.server}:7443` });
    expect(await tls({ port: 7443, servername: 'tls.lab.test' })).toMatchObject({ ok: false, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    expect(await tls({ port: 7444, servername: 'old.lab.test', ca: ca.caCertPath })).toMatchObject({ ok: false, code: 'CERT_HAS_EXPIRED' });
    expect(await tls({ port: 7443, servername: 'other.lab.test', ca: ca.caCertPath })).toMatchObject({
      ok: false,
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
  });

  it('echoes WebSocket binary messages over ws:// and wss://, and refuses configured paths with their status', async () => {
    const ws = (url: string) => labClient(lab, 'ws', { url, ca: ca.caCertPath, 'send-hex': 'c0ffee' });
    expect(await ws(`ws://${lab.server}:7080/chat`)).toEqual({ ok: true, status: 101, receivedHex: 'c0ffee', binary: true });
    expect(await ws(`wss://${lab.server}:7081/chat`)).toEqual({ ok: true, status: 101, receivedHex: 'c0ffee', binary: true });
    expect(await ws(`ws://${lab.server}:7080/refuse`)).toEqual({ ok: false, code: 'unexpected-response', status: 403 });
    expect(await ws(`ws://${lab.server}:7080/gone`)).toEqual({ ok: false, code: 'unexpected-response', status: 410 });
  });

  it('reports a server that dies before listening with its own output', async () => {
    const proc = lab.spawnNode('server', ECHO_SERVER_SCRIPT, ['--config', '{"listeners":[{"kind":"carrier-pigeon","port":1}]}']);
    const err = await lab.waitForPort('server', lab.server, 7999, 'tcp', 5000, { process: proc }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/never opened[\s\S]*exited with code 2[\s\S]*2\| echo-server:/);
  });

  it('keeps two labs apart although they use the same addresses, and tears one down completely', async () => {
    const other = await createLab({ clientResolver: '198.18.2.2' });
    try {
      expect(other.names.client).not.toBe(lab.names.client);
      const otherEcho = await startEchoServer(other, { listeners: [{ kind: 'tcp', host: other.server, port: 7000 }] });
      await applyCensor(other, 'tcp dport 7000 reject with tcp reset');
      expect(await labClient(other, 'tcp', { host: other.server, port: 7000, timeout: 2000 })).toMatchObject({ ok: false, code: 'ECONNREFUSED' });
      expect(await labClient(lab, 'tcp', { host: lab.server, port: 7000, send: 'still-here' })).toMatchObject({ ok: true });

      const pids = [otherEcho.process.pid, ...other.runningProcesses.map((p) => p.pid)];
      await other.destroy();
      await other.destroy(); // idempotent
      const left = await namespaces();
      for (const role of ['client', 'censor', 'server'] as const) expect(left).not.toContain(other.names[role]);
      for (const pid of pids) expect(alive(pid)).toBe(false);
      expect(existsSync(`/etc/netns/${other.names.client}`)).toBe(false);
      expect(other.runningProcesses).toEqual([]);
    } finally {
      await other.destroy();
    }
    expect(await labClient(lab, 'tcp', { host: lab.server, port: 7000, send: 'after' })).toMatchObject({ ok: true });
  });

  it('cleans up when the owning process exits without destroy(), is terminated, or is killed (sweep)', async () => {
    const child = (tail: string) =>
      `import { createLab } from ${JSON.stringify(`${REPO_ROOT}test/lab/netns.ts`)};
       const lab = await createLab(); const p = lab.spawn('server', 'sleep', ['60']);
       console.log(JSON.stringify({ ns: [lab.names.client, lab.names.censor, lab.names.server], pid: p.pid, tmp: lab.tmpDir })); ${tail}`;
    const spawnChild = async (tail: string, signal?: NodeJS.Signals) => {
      const { spawn } = await import('node:child_process');
      const cp = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child(tail)], { cwd: REPO_ROOT });
      const first = await new Promise<string>((resolve, reject) => {
        let out = '';
        cp.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(out.split('\n')[0]!);
        });
        cp.on('exit', () => reject(new Error(`child ended before reporting: ${out}`)));
      });
      if (signal) cp.kill(signal);
      await new Promise((r) => (cp.exitCode !== null || cp.signalCode !== null ? r(null) : cp.on('exit', r)));
      return JSON.parse(first) as { ns: string[]; pid: number; tmp: string };
    };

    for (const [tail, signal] of [['process.exit(0);', undefined], ['setInterval(() => {}, 1000);', 'SIGTERM']] as const) {
      const info = await spawnChild(tail, signal);
      expect(await gone(info.pid)).toBe(true);
      const left = await namespaces();
      for (const ns of info.ns) expect(left).not.toContain(ns);
      expect(existsSync(info.tmp)).toBe(false);
    }

    // SIGKILL leaves everything behind; the next createLab (or sweepStaleLabs) removes it.
    const killed = await spawnChild('setInterval(() => {}, 1000);', 'SIGKILL');
    await sweepStaleLabs();
    const left = await namespaces();
    for (const ns of killed.ns) expect(left).not.toContain(ns);
    expect(await gone(killed.pid)).toBe(true);
    expect(existsSync(killed.tmp)).toBe(false);
  });
});
