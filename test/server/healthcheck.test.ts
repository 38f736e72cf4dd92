import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { createHttpServer } from '../../src/server/http.js';
import { healthzUrl } from '../../src/server/healthcheck.js';
import { Metrics } from '../../src/sinks/metrics.js';
import { StatusBoard } from '../../src/sinks/status.js';
import { closedPort, listenTracked } from '../helpers/servers.js';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'cli.js');

/** `callprobe healthcheck`, asynchronously: the daemon it asks runs in this process. */
async function healthcheck(config: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'healthcheck', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const [status] = (await once(child, 'exit')) as [number | null];
  return { status, stdout, stderr };
}

describe('callprobe healthcheck (the container HEALTHCHECK)', () => {
  let dir: string;
  let port: number;
  let healthy = true;
  let close: () => Promise<void>;
  const token = 'a-very-long-test-token';
  const config = (listen: string, extra = '') => {
    const file = join(dir, `c-${listen.replace(/\W/g, '_')}.yaml`);
    writeFileSync(file, `http: { listen: "${listen}", token: ${token} }\n${extra}`);
    return file;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-healthcheck-'));
    const server = createHttpServer({
      registry: new Metrics('lab').registry,
      status: new StatusBoard(),
      recordsDir: dir,
      current: () => ({ vantage: 'lab', token }),
      startedAt: '2026-11-22T09:00:00.000Z',
      log: silentLogger(),
      health: () => ({ ok: healthy, detail: {} }),
    });
    ({ port, close } = await listenTracked(server));
  });
  afterAll(async () => {
    await close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reaches an unspecified listen address on loopback, IPv6 in brackets', () => {
    expect(healthzUrl('0.0.0.0:9465')).toBe('http://127.0.0.1:9465/healthz');
    expect(healthzUrl('[::]:9465')).toBe('http://[::1]:9465/healthz');
    expect(healthzUrl('198.18.1.2:80')).toBe('http://198.18.1.2:80/healthz');
    expect((healthzUrl('127.0.0.1:0') as Error).message).toBe('http.listen has port 0 (a free port chosen at start): there is no fixed address to check');
  });

  it('exit 0 when the daemon of the config answers ok, without its token', async () => {
    expect(await healthcheck(config(`0.0.0.0:${port}`))).toEqual({ status: 0, stdout: `http://127.0.0.1:${port}/healthz: 200 ok\n`, stderr: '' });
  });

  it('exit 1 when it answers unhealthy, when nothing listens, or when there is no address to ask', async () => {
    healthy = false;
    try {
      expect(await healthcheck(config(`127.0.0.1:${port}`))).toEqual({ status: 1, stdout: '', stderr: `http://127.0.0.1:${port}/healthz: 503 unhealthy\n` });
    } finally {
      healthy = true;
    }
    const refused = await closedPort();
    expect(await healthcheck(config(`0.0.0.0:${refused}`))).toEqual({ status: 1, stdout: '', stderr: `http://127.0.0.1:${refused}/healthz: ECONNREFUSED\n` });
    const off = join(dir, 'off.yaml');
    writeFileSync(off, 'http: { enabled: false }\n');
    expect(await healthcheck(off)).toEqual({ status: 1, stdout: '', stderr: 'callprobe healthcheck: http.enabled is false: there is no /healthz to check\n' });
  });

  it('exit 2 with FILE:LINE:COL for a bad config', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'http: { listen: "127.0.0.1:" }\n');
    expect(await healthcheck(bad)).toEqual({ status: 2, stdout: '', stderr: `${bad}:1:17: http.listen: must be IP:PORT (an IP literal, IPv6 in brackets, and a port)\n` });
  });
});
