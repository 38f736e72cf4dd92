import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import * as A from '../../src/protocol/stun-attributes.js';
import { METHOD_BINDING, buildMessage, parseMessage } from '../../src/protocol/stun.js';
import type { ProbeResult, Verdict } from '../../src/result.js';
import { describeNeeding } from '../helpers/requires.js';
import { result } from '../helpers/results.js';
import { closedPort, tcpServer, type Running } from '../helpers/servers.js';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = join(import.meta.dirname, '..', '..');
/** Screenshots for a person to look at (and for README's docs/status-page.png). */
const SHOTS = process.env.CALLPROBE_SCREENSHOTS ?? join(ROOT, 'test-output');
/** Markup in every free-text field a catalogue, a config or a server controls: none of it may run. */
const HOSTILE = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`;
/** The vantage's name is free text too (at most 64 characters). */
const VANTAGE = `page-test <img src=x onerror="window.__pwned=3">`;

const MIN = 60_000;

/** A STUN server on 127.0.0.2 (our source is 127.0.0.1): it answers a Binding, or refuses it with hostile text. */
async function stunServer(hostile: boolean): Promise<{ port: number; close(): void }> {
  const socket: UdpSocket = createSocket('udp4');
  socket.on('message', (msg, from) => {
    const req = parseMessage(Buffer.from(msg));
    const answer = hostile
      ? buildMessage({ method: METHOD_BINDING, class: 'error', transactionId: req.transactionId, attributes: [A.errorCode(403, HOSTILE.slice(0, 100)), A.software(HOSTILE)] })
      : buildMessage({ method: METHOD_BINDING, class: 'success', transactionId: req.transactionId, attributes: [A.xorMappedAddress({ family: 'IPv4', address: from.address, port: from.port })] });
    socket.send(answer, from.port, from.address);
  });
  socket.bind(0, '127.0.0.2');
  await once(socket, 'listening');
  return { port: socket.address().port, close: () => socket.close() };
}

/** A run every 5 minutes from `fromMs` to `toMs` with the verdict `verdictAt(t)` gives: the records a daemon left before a restart. */
function seeded(service: string, target: string, path: 'messaging' | 'calls', fromMs: number, toMs: number, verdictAt: (t: number) => Verdict, control = false): ProbeResult[] {
  const out: ProbeResult[] = [];
  for (let t = fromMs; t < toMs; t += 5 * MIN) {
    const verdict = verdictAt(t);
    const failed = verdict !== 'ok';
    out.push(
      result({
        vantage: { name: 'page-test' },
        service,
        target,
        path,
        startedAt: new Date(t).toISOString(),
        verdict,
        failure: failed ? 'connection_refused' : null,
        failedPhase: failed ? 'tcp' : null,
        scope: verdict === 'blocked' ? 'service' : verdict === 'error' && !control ? 'network' : null,
      }),
    );
  }
  return out;
}

interface Daemon {
  process: ChildProcess;
  base: string;
}

/** `callprobe run` on a config in `dir`, resolved once `probes` distinct targets have finished a run. */
async function startDaemon(dir: string, probes: number): Promise<Daemon> {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'run', '--config', join(dir, 'c.yaml')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const finished = new Set<string>();
  let history = false;
  const base = await new Promise<string>((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`callprobe run exited with ${code}`)));
    let url = '';
    lines.on('line', (line) => {
      const entry = JSON.parse(line) as { msg: string; listen?: { port: number }; probe?: string };
      if (entry.msg === 'http server listening') url = `http://127.0.0.1:${entry.listen!.port}`;
      if (entry.msg === 'probe finished') finished.add(entry.probe!);
      if (entry.msg === 'history loaded from the records') history = true;
      if (finished.size === probes && history) resolve(url);
    });
  });
  return { process: child, base };
}

function config(dir: string, vantage: string, catalogues: string[]): string {
  return `vantage: { name: ${JSON.stringify(vantage)} }\nembeddedCatalogues: false\ncatalogues: [${catalogues.join(', ')}]\ndataDir: ${join(dir, 'data')}\nschedule: { interval: 10s, jitter: 0, phaseTimeout: 3s }\nhttp: { listen: "127.0.0.1:0" }\ndns: { resolver: "127.0.0.1:53" }\nsafety: { allow: [127.0.0.0/8, "::1/128", 198.18.0.0/15] }\n`;
}

/**
 * The status page as a person sees it: real daemons on loopback, rendered by Debian's Chromium in
 * Moscow time (so that local time and UTC differ), after a restart over a day of records.
 */
describeNeeding(existsSync(CHROMIUM) ? null : `${CHROMIUM} is missing: scripts/test installs Debian's chromium`, 'status page in Chromium', () => {
  let dir: string;
  let echo: Running;
  let good: { port: number; close(): void };
  let hostile: { port: number; close(): void };
  let daemon: Daemon;
  let down: Daemon;
  let browser: Browser;
  /** When the seeded records say WhatsApp calls became blocked. */
  let blockedSince: number;
  const errors: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-page-'));
    echo = await tcpServer('echo');
    good = await stunServer(false);
    hostile = await stunServer(true);
    const refused = await closedPort();
    writeFileSync(
      join(dir, 'wa.yaml'),
      `service: whatsapp\ntargets:\n  - name: web\n    host: 127.0.0.1\n    port: ${echo.port}\n    phases: [tcp]\n  - name: relay\n    host: 127.0.0.2\n    port: ${hostile.port}\n    phases: [{ stun: { rtoMs: 100, rc: 2, rm: 2, note: ${JSON.stringify(HOSTILE)} } }]\n`,
    );
    writeFileSync(
      join(dir, 'tg.yaml'),
      `service: telegram\ntargets:\n  - name: dc2\n    host: 127.0.0.1\n    port: ${refused}\n    phases: [tcp]\n  - name: dc4\n    host: 127.0.0.1\n    port: ${echo.port}\n    phases: [tcp]\n`,
    );
    writeFileSync(
      join(dir, 'ctl.yaml'),
      `service: control\ncontrol: true\ntargets:\n  - name: site\n    host: 127.0.0.1\n    port: ${echo.port}\n    phases: [tcp]\n  - name: stun\n    host: 127.0.0.2\n    port: ${good.port}\n    phases: [{ stun: { rtoMs: 100, rc: 2, rm: 2 } }]\n`,
    );
    writeFileSync(join(dir, 'c.yaml'), config(dir, VANTAGE, ['wa.yaml', 'tg.yaml', 'ctl.yaml']));
    // A day of records from before this start: WhatsApp calls blocked for the last 3 h 20 min, the
    // network down for 40 minutes 12 hours ago, Telegram's dc2 blocked for 5 hours.
    const now = Date.now();
    const dayAgo = now - 24 * 60 * MIN;
    blockedSince = now - 200 * MIN;
    const outage = (t: number): boolean => t >= now - 12 * 60 * MIN && t < now - 11 * 60 * MIN - 20 * MIN;
    const records = [
      ...seeded('control', 'site', 'messaging', dayAgo, now - 2 * MIN, (t) => (outage(t) ? 'error' : 'ok'), true),
      ...seeded('whatsapp', 'web', 'messaging', dayAgo, now - 2 * MIN, (t) => (outage(t) ? 'error' : 'ok')),
      ...seeded('whatsapp', 'relay', 'calls', dayAgo, now - 2 * MIN, (t) => (outage(t) ? 'error' : t >= blockedSince ? 'blocked' : 'ok')),
      ...seeded('telegram', 'dc2', 'messaging', dayAgo, now - 2 * MIN, (t) => (outage(t) ? 'error' : t >= now - 300 * MIN ? 'blocked' : 'ok')),
      ...seeded('telegram', 'dc4', 'messaging', dayAgo, now - 2 * MIN, (t) => (outage(t) ? 'error' : 'ok')),
    ].sort((a, b) => a.startedAt.localeCompare(b.startedAt));
    mkdirSync(join(dir, 'data', 'records'), { recursive: true });
    const day = new Date(now).toISOString().slice(0, 10).replaceAll('-', '');
    writeFileSync(join(dir, 'data', 'records', `callprobe-${day}-0000.jsonl`), records.map((r) => JSON.stringify(r) + '\n').join(''));
    daemon = await startDaemon(dir, 6);

    // A second vantage whose every control fails: the network is down.
    const downDir = join(dir, 'down');
    mkdirSync(downDir);
    writeFileSync(join(downDir, 'tg.yaml'), `service: telegram\ntargets:\n  - name: dc2\n    host: 127.0.0.1\n    port: ${refused}\n    phases: [tcp]\n`);
    writeFileSync(join(downDir, 'ctl.yaml'), `service: control\ncontrol: true\ntargets:\n  - name: site\n    host: 127.0.0.1\n    port: ${refused}\n    phases: [tcp]\n`);
    writeFileSync(join(downDir, 'c.yaml'), config(downDir, 'offline', ['tg.yaml', 'ctl.yaml']));
    down = await startDaemon(downDir, 2);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(SHOTS, { recursive: true });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    // Stopped and gone before their data directory is removed (they flush records on SIGTERM).
    await Promise.all(
      [daemon, down].map((d) => (d && d.process.exitCode === null ? (d.process.kill('SIGTERM'), once(d.process, 'exit')) : null)),
    );
    await echo?.close();
    good?.close();
    hostile?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function open(path: string, base = daemon.base): Promise<Page> {
    const context = await browser.newContext({ timezoneId: 'Europe/Moscow', viewport: { width: 1200, height: 900 } });
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    // Nothing but the daemon itself may be asked for anything.
    page.on('request', (r) => {
      if (!r.url().startsWith(base)) errors.push(`request to ${r.url()}`);
    });
    const response = await page.goto(base + path);
    expect(response!.status()).toBe(200);
    await page.waitForLoadState('load');
    return page;
  }

  it('answers first: one line per service and path, ok, blocked and partly blocked, since when, what fails', async () => {
    const page = await open('/');
    expect(await page.title()).toBe(`callprobe · ${VANTAGE}`);
    expect(await page.locator('h1').textContent()).toBe(`callprobe · ${VANTAGE}`);
    const lines = page.locator('li.answer');
    expect(await lines.evaluateAll((els) => els.map((e) => [(e as HTMLElement).dataset.answer, e.className]))).toEqual([
      ['whatsapp/calls', 'answer s-blocked'],
      ['whatsapp/messaging', 'answer s-ok'],
      ['telegram/messaging', 'answer s-degraded'],
    ]);
    expect(await lines.locator('.title').allTextContents()).toEqual(['WhatsApp calls', 'WhatsApp messaging', 'Telegram messaging']);
    expect(await lines.locator('.badge').allTextContents()).toEqual(['✕ blocked', '✓ ok', '! degraded']);
    expect(await lines.locator('.why').allTextContents()).toEqual([
      'blocked: reaching the STUN server fails: the server answered with an error (proto_error), at 1 of 1 target; only this service fails: other foreign destinations work',
      'works: 1 of 1 target ok',
      'partly blocked: connecting fails: refused (connection_refused) (1 blocked, 1 ok of 2); only this service fails: other foreign destinations work',
    ]);
    // Since when, from the records written before this start: local time (Moscow, UTC+3) and UTC.
    const since = new Date(blockedSince);
    const utc = since.toISOString();
    const moscow = new Date(blockedSince + 3 * 60 * MIN).toISOString();
    const calls = lines.first().locator('.since');
    expect(await calls.locator('time').getAttribute('datetime')).toBe(utc);
    expect(await calls.textContent()).toBe(`since ${moscow.slice(0, 10)} ${moscow.slice(11, 16)} local (${utc.slice(0, 10)} ${utc.slice(11, 16)} UTC), for 3 h 20 min`);
    expect(await page.locator('.banner').count()).toBe(0);
    await page.screenshot({ path: join(SHOTS, 'status-page.png'), fullPage: true });
  });

  it('draws every timeline (24 h and 7 d per service and path) with a text equivalent', async () => {
    const page = await open('/');
    const charts = page.locator('.timeline .chart');
    expect(await charts.count()).toBe(6);
    expect(await page.locator('.timeline figcaption').allTextContents()).toEqual([
      'WhatsApp calls · last 24 hours',
      'WhatsApp calls · last 7 days',
      'WhatsApp messaging · last 24 hours',
      'WhatsApp messaging · last 7 days',
      'Telegram messaging · last 24 hours',
      'Telegram messaging · last 7 days',
    ]);
    // Drawn: each chart's canvas has coloured pixels.
    const painted = await charts.evaluateAll((els) =>
      els.map((el) => {
        const canvas = el.querySelector('canvas')!;
        const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) n++;
        return n > 1000;
      }),
    );
    expect(painted).toEqual([true, true, true, true, true, true]);
    // The same, as text: a summary for screen readers and the stretches of one state in a table.
    expect(await charts.first().getAttribute('role')).toBe('img');
    expect(await charts.first().getAttribute('aria-label')).toMatch(/^WhatsApp calls, last 24 hours: \d+ runs, \d+ % ok, \d+ % blocked, \d+ % error$/);
    const table = page.locator('.timeline').first().locator('details table tbody tr');
    expect(await table.locator('td:nth-child(3)').allTextContents()).toEqual(['✓ ok', '? unknown', '✓ ok', '✕ blocked']);
    expect(await page.locator('.legend dt').allTextContents()).toEqual(['✓ ok', '! degraded', '✕ blocked', '? unknown', 'scope', 'times']);
  });

  it('the detail view: the last run phase by phase with its evidence, the periods and the runs before, nothing injected', async () => {
    const page = await open('/');
    await page.getByRole('link', { name: 'relay' }).click();
    await page.waitForLoadState('load');
    expect(page.url()).toBe(`${daemon.base}/target?id=whatsapp%2Frelay`);
    expect(await page.locator('h1').textContent()).toBe('WhatsApp · relay');
    const phase = page.locator('section[aria-labelledby="last-h"] tbody tr');
    expect(await phase.count()).toBe(1);
    expect(await phase.locator('td').first().textContent()).toBe('stunreaching the STUN server');
    expect(await phase.locator('td').nth(1).textContent()).toBe(`127.0.0.2:${hostile.port} udp`);
    expect(await phase.locator('td').nth(4).evaluate((td) => td.firstChild!.textContent)).toBe('the server answered with an error (proto_error)');
    const evidence = JSON.parse((await phase.locator('pre').textContent())!) as Record<string, unknown>;
    expect(evidence).toMatchObject({ note: HOSTILE, software: HOSTILE, errorCode: 403, errorReason: HOSTILE.slice(0, 100) });
    // Our own address is a token in the evidence, the server's is not.
    expect(evidence.localAddress).toMatch(/^own-v4:[0-9a-f]{8}:\d+$/);
    const periods = page.locator('section[aria-labelledby="periods-h"] tbody tr');
    expect(await periods.locator('td:first-child').allTextContents()).toEqual(['✕ blocked', '✓ ok']);
    // The seeded block, and the live run that continued it.
    const blocked = Math.round((Date.now() - blockedSince) / (5 * MIN));
    expect(Number(await periods.first().locator('td').nth(3).textContent())).toBeGreaterThanOrEqual(blocked);
    expect(await page.locator('section[aria-labelledby="prev-h"] tbody tr').count()).toBe(48);
    expect(await page.locator('.timeline canvas').count()).toBe(2);
    // Nothing from the catalogue, the config or the server ran, and no script element came from them.
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.locator('script').evaluateAll((els) => els.map((e) => (e as HTMLScriptElement).type || (e as HTMLScriptElement).src.replace(/^.*\/assets\//, '')))).toEqual([
      expect.stringMatching(/^uplot\.[0-9a-f]{12}\.js$/),
      expect.stringMatching(/^status\.[0-9a-f]{12}\.js$/),
      'application/json',
    ]);
    await page.locator('section[aria-labelledby="last-h"] details').first().evaluate((d) => ((d as HTMLDetailsElement).open = true));
    await page.screenshot({ path: join(SHOTS, 'status-target.png'), fullPage: true });
    const main = await open('/');
    expect(await main.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(errors).toEqual([]);
  });

  it('serves a strict Content-Security-Policy and the assets with long caching', async () => {
    const res = await fetch(daemon.base + '/');
    expect(res.headers.get('content-security-policy')).toBe(
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    const html = await res.text();
    const script = /src="(\/assets\/uplot\.[0-9a-f]{12}\.js)"/.exec(html)![1]!;
    const asset = await fetch(daemon.base + script);
    expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(asset.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect((await asset.arrayBuffer()).byteLength).toBe(51_081);
  });

  it('a banner says so when every control fails: the network here is down', async () => {
    const page = await open('/', down.base);
    const banner = page.locator('.banner');
    expect(await banner.count()).toBe(1);
    expect(await banner.getAttribute('role')).toBe('alert');
    expect(await banner.locator('strong').textContent()).toBe('Your network is down');
    expect(await banner.textContent()).toMatch(
      /^Your network is downYour network looks down: every control failed \(1 of 1\)\. Nothing about the services can be concluded until a control works again\. since \d{4}-\d\d-\d\d \d\d:\d\d local \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\), for \d+ s$/,
    );
    expect(await page.locator('li.answer .badge').allTextContents()).toEqual(['? unknown']);
    expect(await page.locator('li.answer .why').allTextContents()).toEqual([
      'nothing can be concluded: connecting fails: refused (connection_refused), and the controls could not vouch for the network (1 of 1 target)',
    ]);
    await page.screenshot({ path: join(SHOTS, 'status-network-down.png'), fullPage: true });
  });
});
