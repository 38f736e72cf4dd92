import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe } from 'vitest';
import { labDecision } from '../lab/describe-lab.js';
import { runProcess, spawnHost, type NsProcess, type RunResult, type SpawnOptions } from '../lab/proc.js';

/**
 * A Docker daemon of the tests' own (Debian's docker.io), for test/docker and test/systemd. Every
 * process is started in its own process group and stopped by its PID; nothing of the host's
 * Docker (if any) is used or touched.
 */

/**
 * The catalogue of the daemon under test in a container or a unit: its one target is the daemon's
 * own HTTP port on loopback (with --network none, or a private network, loopback is all there is).
 */
export const SELF_CATALOGUE = `service: loop
control: true
targets:
  - { name: self, host: 127.0.0.1, port: 9465, phases: [tcp] }
`;

/** Debian's client, the same version as its daemon (another `docker` may come first on PATH). */
export const DOCKER = '/usr/bin/docker';
const DOCKERD = '/usr/sbin/dockerd';

/** Runs a host command to completion; throws with its output when it does not exit 0. */
export async function runHost(cmd: string, args: readonly string[], timeoutMs: number, opts: SpawnOptions = {}): Promise<RunResult> {
  const res = await runProcess(spawnHost(cmd, args, { ...opts, captureAll: true }), timeoutMs);
  if (res.code !== 0) {
    const how = res.timedOut ? `timed out after ${timeoutMs} ms` : `exited ${res.code ?? res.signal}`;
    throw new Error(`${cmd} ${args.join(' ')} ${how}\n${res.stdout.slice(-4000)}\n${res.stderr.slice(-4000)}`);
  }
  return res;
}

/** Why these tests cannot run on this machine, or null. */
export function dockerUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'the Docker tests start a dockerd of their own: run them as root';
  const needed: Array<[string, string]> = [
    [DOCKERD, 'docker.io'],
    [DOCKER, 'docker.io'],
    ['/usr/sbin/debootstrap', 'debootstrap'],
    ['/usr/bin/unshare', 'util-linux'],
  ];
  for (const [file, pkg] of needed) if (!existsSync(file)) return `${file} is missing: scripts/test installs Debian's ${pkg}`;
  return null;
}

/** `describe` that runs as root with Docker, skips with the reason otherwise, and throws under CI=true. */
export function describeDocker(name: string, fn: () => void): void {
  const reason = dockerUnavailableReason();
  switch (labDecision(reason)) {
    case 'run':
      describe(name, fn);
      return;
    case 'fail':
      throw new Error(`${name}: ${reason} (CI=true: these tests must run, not skip)`);
    case 'skip':
      console.warn(`skipping "${name}": ${reason}`);
      describe.skip(`${name} [skipped: ${reason}]`, fn);
  }
}

export interface Dockerd {
  /** `docker ARGS` against this daemon; throws with the output unless it exits 0. */
  docker(args: readonly string[], opts?: { timeoutMs?: number; input?: string }): Promise<RunResult>;
  /** The same, returning a non-zero exit instead of throwing. */
  tryDocker(args: readonly string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** Removes every container, stops the daemon by its PID and unmounts what it left under its directory. */
  stop(): Promise<void>;
}

/**
 * overlay2 where the kernel can mount an overlay on `dir`'s file system, else vfs, which works on
 * any file system but copies the whole image for every layer and container: measured here, the
 * image built in 61 s on vfs and 21 s on overlay2, and each container took 5 s to create instead
 * of 0.3 s, most of it kernel time that would slow the tests running beside these.
 */
async function storageDriver(dir: string): Promise<'overlay2' | 'vfs'> {
  const probe = join(dir, 'overlay-probe');
  for (const d of ['lower', 'upper', 'work', 'merged']) mkdirSync(join(probe, d), { recursive: true });
  const options = `lowerdir=${join(probe, 'lower')},upperdir=${join(probe, 'upper')},workdir=${join(probe, 'work')}`;
  const mounted = await runProcess(spawnHost('mount', ['-t', 'overlay', 'overlay', '-o', options, join(probe, 'merged')], { captureAll: true }), 10_000);
  if (mounted.code !== 0) return 'vfs';
  await runProcess(spawnHost('umount', [join(probe, 'merged')], { captureAll: true }), 10_000);
  return 'overlay2';
}

/**
 * dockerd with its data, state, socket and client config under `dir`, no bridge, no iptables
 * rules, and in a network namespace of its own where only a loopback that is down exists: whatever
 * the daemon or a build tries, no packet leaves this host. Containers run with `--network none`.
 */
export async function startDockerd(dir: string): Promise<Dockerd> {
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, 'docker.sock');
  writeFileSync(join(dir, 'daemon.json'), '{}\n');
  const proc = spawnHost(
    'unshare',
    [
      '--net',
      '--',
      DOCKERD,
      `--config-file=${join(dir, 'daemon.json')}`,
      `--data-root=${join(dir, 'data')}`,
      `--exec-root=${join(dir, 'exec')}`,
      `--pidfile=${join(dir, 'dockerd.pid')}`,
      `--host=unix://${socket}`,
      `--storage-driver=${await storageDriver(dir)}`,
      '--bridge=none',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-masq=false',
      '--userland-proxy=false',
    ],
    { ringLines: 100 },
  );
  const killAtExit = (): void => proc.killSync();
  process.once('exit', killAtExit);
  const env = { ...process.env, DOCKER_BUILDKIT: '1', DOCKER_CONFIG: join(dir, 'client') };
  const tryDocker = (args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}) =>
    runProcess(spawnHost(DOCKER, [`--host=unix://${socket}`, ...args], { captureAll: true, env, ...(opts.input ? { input: opts.input } : {}) }), opts.timeoutMs ?? 300_000);
  const docker = async (args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}) => {
    const res = await tryDocker(args, opts);
    if (res.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${res.code ?? res.signal}\n${res.stdout.slice(-4000)}\n${res.stderr.slice(-4000)}`);
    return res;
  };

  const started = Date.now();
  while ((await tryDocker(['version'], { timeoutMs: 10_000 })).code !== 0) {
    if (!proc.running || Date.now() - started > 60_000) {
      await proc.kill(5_000);
      throw new Error(`dockerd did not come up\n${proc.describe()}`);
    }
    await sleep(250);
  }

  const stop = async (): Promise<void> => {
    try {
      const ids = (await tryDocker(['ps', '-aq'], { timeoutMs: 30_000 })).stdout.split('\n').filter(Boolean);
      if (ids.length > 0) await tryDocker(['rm', '-f', ...ids], { timeoutMs: 60_000 });
    } finally {
      await proc.kill(30_000);
      process.off('exit', killAtExit);
      // A daemon stopped mid-way can leave mounts under its directories (shm, overlays of runc).
      const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .map((line) => line.split(' ')[4] ?? '')
        .filter((point) => point.startsWith(dir + '/'))
        .sort((a, b) => b.length - a.length);
      for (const point of mounts) await runProcess(spawnHost('umount', ['-l', point], { captureAll: true }), 10_000);
    }
  };
  return { docker, tryDocker, stop };
}
