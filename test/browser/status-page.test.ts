import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeNeeding } from '../helpers/requires.js';
import { closedPort, tcpServer, type Running } from '../helpers/servers.js';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = join(import.meta.dirname, '..', '..');

/** The status page as a person sees it: a real daemon on loopback, rendered by Debian's Chromium. */
describeNeeding(existsSync(CHROMIUM) ? null : `${CHROMIUM} is missing: scripts/test installs Debian's chromium`, 'status page in Chromium', () => {
  let dir: string;
  let server: Running;
  let daemon: ChildProcess;
  let browser: Browser;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-page-'));
    server = await tcpServer('echo');
    const refused = await closedPort();
    writeFileSync(join(dir, 'svc.yaml'), `service: telegram\ntargets:\n  - name: dc2\n    host: 127.0.0.1\n    port: ${refused}\n    phases: [tcp]\n  - name: dc4\n    host: 127.0.0.1\n    port: ${server.port}\n    phases: [tcp]\n`);
    writeFileSync(join(dir, 'ctl.yaml'), `service: control\ncontrol: true\ntargets:\n  - name: domestic\n    host: 127.0.0.1\n    port: ${server.port}\n    phases: [tcp]\n`);
    writeFileSync(
      join(dir, 'c.yaml'),
      `vantage: { name: page-test }\nembeddedCatalogues: false\ncatalogues: [svc.yaml, ctl.yaml]\ndataDir: ${join(dir, 'data')}\nschedule: { interval: 10s, jitter: 0 }\nhttp: { listen: "127.0.0.1:0" }\ndns: { resolver: "127.0.0.1:53" }\nsafety: { allow: [127.0.0.0/8] }\n`,
    );
    daemon = spawn(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'run', '--config', join(dir, 'c.yaml')], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = createInterface({ input: daemon.stdout! });
    const finished = new Set<string>();
    base = await new Promise<string>((resolve) => {
      let url = '';
      lines.on('line', (line) => {
        const entry = JSON.parse(line) as { msg: string; listen?: { port: number }; probe?: string };
        if (entry.msg === 'http server listening') url = `http://127.0.0.1:${entry.listen!.port}`;
        if (entry.msg === 'probe finished') finished.add(entry.probe!);
        if (finished.size === 3) resolve(url);
      });
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    daemon?.kill('SIGTERM');
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows each service with its phase matrix, verdicts and the last failure', async () => {
    const page = await browser.newPage();
    const response = await page.goto(base + '/');
    expect(response!.status()).toBe(200);
    expect(await page.title()).toBe('callprobe · page-test');
    expect(await page.locator('h2').allTextContents()).toEqual(['control', 'telegram']);
    const rows = page.locator('table').nth(1).locator('tbody tr');
    expect(await rows.count()).toBe(2);
    const dc2 = rows.filter({ hasText: 'dc2' });
    expect(await dc2.locator('td').nth(1).textContent()).toBe('blocked');
    expect(await dc2.locator('td.fail code').textContent()).toBe('connection_refused');
    const dc4 = rows.filter({ hasText: 'dc4' });
    expect(await dc4.locator('td').nth(1).textContent()).toBe('ok');
    expect(await dc4.locator('td.ok').textContent()).toMatch(/^\d+\.\d ms$/);
    expect(await dc2.locator('.hist span.h-blocked').count()).toBeGreaterThanOrEqual(1);
    await page.screenshot({ path: process.env.CALLPROBE_SCREENSHOT ?? join(dir, 'status.png'), fullPage: true });
    // Links to the machine-readable views work from the page.
    await page.getByRole('link', { name: '/api/status' }).click();
    expect(await page.locator('body').textContent()).toContain('"vantage":"page-test"');
  });
});
