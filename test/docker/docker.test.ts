import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import { REPO_ROOT } from '../lab/netns.js';
import { SELF_CATALOGUE, describeDocker, startDockerd, type Dockerd } from './dockerd.js';
import { MINBASE, build, nodeBaseImage } from './images.js';

const IMAGE = 'callprobe:test';
const TOKEN = 'docker-test-token-0123456789';
const CONFIG = `vantage: { name: docker-test-vantage }
embeddedCatalogues: false
catalogues: [loop.probes.yaml]
http: { listen: "0.0.0.0:9465", token: ${TOKEN} }
dns: { resolver: "127.0.0.1:53" }
safety: { allow: [127.0.0.0/8, "::1/128", 198.18.0.0/15] }
`;

/** Polls `probe` until it returns a value, or fails after `timeoutMs` with `what`. */
async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(250);
  }
}

/**
 * The Dockerfile, built from this checkout on a locally made Debian 12 + Node.js 20 base (no
 * registry is reachable), and run as README says: the config mounted at its fixed path, records in
 * a named volume, the HEALTHCHECK of the image. `--network none` throughout.
 */
describeDocker('the Docker image', () => {
  let dir: string;
  let dockerd: Dockerd;

  beforeAll(async () => {
    dir = mkdtempSync('/tmp/callprobe-docker-');
    dockerd = await startDockerd(join(dir, 'dockerd'));
    await nodeBaseImage(dockerd, 'callprobe-base:test', MINBASE, dir);
    await build(dockerd, IMAGE, REPO_ROOT, { BASE: 'callprobe-base:test' });
    writeFileSync(join(dir, 'callprobe.yaml'), CONFIG);
    writeFileSync(join(dir, 'loop.probes.yaml'), SELF_CATALOGUE);
  }, 900_000);
  afterAll(async () => {
    await dockerd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('holds only what runs (.dockerignore), and runs as the unprivileged node user', async () => {
    const out = await dockerd.docker(['run', '--rm', '--network=none', '--pull=never', '--entrypoint=sh', IMAGE, '-c', 'id && ls -A /app']);
    expect(out.stdout).toBe('uid=1000(node) gid=1000(node) groups=1000(node)\nconfig\ndist\nnode_modules\npackage.json\nprobes\n');
  });

  it('runs on the mounted config, listens on 0.0.0.0, records into the volume, reports healthy, and stops cleanly', async () => {
    await dockerd.docker([
      'run', '-d', '--name=callprobe-test', '--network=none', '--pull=never',
      // The image's own HEALTHCHECK command, checked every second instead of every minute.
      '--health-interval=1s', '--health-start-period=0s',
      '-v', `${join(dir, 'callprobe.yaml')}:/etc/callprobe/callprobe.yaml:ro`,
      '-v', `${join(dir, 'loop.probes.yaml')}:/etc/callprobe/loop.probes.yaml:ro`,
      '-v', 'callprobe-test-data:/var/lib/callprobe',
      IMAGE,
    ]);
    const inspect = async <T>(format: string): Promise<T> => JSON.parse((await dockerd.docker(['inspect', '-f', `{{json ${format}}}`, 'callprobe-test'])).stdout) as T;
    expect(await inspect<string[]>('.Config.Healthcheck.Test')).toEqual(['CMD', 'node', 'dist/cli.js', 'healthcheck', '--config', '/etc/callprobe/callprobe.yaml']);
    const health = await until('a healthy container', 60_000, async () => {
      const h = await inspect<{ Status: string; Log: Array<{ ExitCode: number; Output: string }> }>('.State.Health');
      return h.Status === 'healthy' ? h : undefined;
    });
    expect(health.Log.at(-1)).toMatchObject({ ExitCode: 0, Output: 'http://127.0.0.1:9465/healthz: 200 ok\n' });

    // The vantage name comes from the mounted config, and the API wants the config's token.
    const api = (auth: string) =>
      dockerd.docker(['exec', 'callprobe-test', 'node', '-e', `fetch('http://127.0.0.1:9465/api/status', { headers: { authorization: '${auth}' } }).then(async (r) => console.log(r.status, r.status === 200 ? (await r.json()).vantage : ''))`]);
    expect((await api(`Bearer ${TOKEN}`)).stdout).toBe('200 docker-test-vantage\n');
    expect((await api('Bearer wrong')).stdout).toBe('401 \n');
    // Listening on 0.0.0.0:9465 (00000000:24F9, state 0A LISTEN), so a published port reaches it.
    const tcp = (await dockerd.docker(['exec', 'callprobe-test', 'cat', '/proc/net/tcp'])).stdout;
    expect(tcp.split('\n').filter((l) => / 0A /.test(l)).map((l) => l.trim().split(/\s+/)[1])).toEqual(['00000000:24F9']);

    // Records land in the volume, not in a home directory.
    const volume = (await dockerd.docker(['volume', 'inspect', '-f', '{{.Mountpoint}}', 'callprobe-test-data'])).stdout.trim();
    const records = join(volume, 'records');
    const first = await until('a record in the volume', 30_000, async () => {
      try {
        const file = readdirSync(records)[0];
        const line = file ? readFileSync(join(records, file), 'utf8').split('\n')[0] : '';
        return line ? { file, result: JSON.parse(line) as ProbeResult } : undefined;
      } catch {
        return undefined;
      }
    });
    expect(first.file).toBe(`callprobe-${new Date().toISOString().slice(0, 10).replaceAll('-', '')}-0000.jsonl`);
    expect(first.result).toMatchObject({ vantage: { name: 'docker-test-vantage' }, service: 'loop', target: 'self', verdict: 'ok', failure: null });

    // docker stop is SIGTERM: runs finish, records are flushed, exit 0.
    await dockerd.docker(['stop', '--time=20', 'callprobe-test'], { timeoutMs: 60_000 });
    expect(await inspect<number>('.State.ExitCode')).toBe(0);
    const logs = (await dockerd.docker(['logs', 'callprobe-test'])).stdout.trim().split('\n');
    expect((JSON.parse(logs.at(-1)!) as { msg: string }).msg).toBe('stopped');
  }, 180_000);
});
