import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeResult } from '../../src/result.js';
import { SELF_CATALOGUE, describeDocker, startDockerd, type Dockerd } from '../docker/dockerd.js';
import { WITH_SYSTEMD, build, nodeBaseImage } from '../docker/images.js';
import { REPO_ROOT } from '../lab/netns.js';

const UNIT = join(REPO_ROOT, 'config', 'systemd', 'callprobe.service');
const ANALYZE = '/usr/bin/systemd-analyze';
/** The unit's Node options, and V8's heap limit under them (old space and young generation), Node 20 on x64. */
const NODE_OPTIONS = ['--max-old-space-size=128', '--max-semi-space-size=1'];
const HEAP_LIMIT_MIB = 131;
if (!existsSync(ANALYZE) && process.env.CI === 'true') throw new Error(`${ANALYZE} is missing: scripts/test installs Debian's systemd`);

/** "Key=value" lines of the unit's [Service] section, in order (keys may repeat). */
function serviceSettings(): Array<[string, string]> {
  const text = readFileSync(UNIT, 'utf8');
  const section = text.slice(text.indexOf('[Service]'), text.indexOf('[Install]'));
  return section
    .split('\n')
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}

describe('config/systemd/callprobe.service', () => {
  it.skipIf(!existsSync(ANALYZE))('systemd-analyze security rates its exposure 1.1 (at most 2.0), and verify finds nothing', () => {
    const out = spawnSync(ANALYZE, ['security', '--offline=true', UNIT], { encoding: 'utf8', timeout: 30_000 });
    const exposure = /Overall exposure level for callprobe\.service: (\d+\.\d)/.exec(out.stdout)?.[1];
    expect(out.status).toBe(0);
    expect(Number(exposure)).toBeLessThanOrEqual(2.0);
    expect(exposure).toBe('1.1'); // Debian 12's systemd 252; 3.6 before the hardening
    const verify = spawnSync(ANALYZE, ['verify', UNIT], { encoding: 'utf8', timeout: 30_000 });
    expect({ status: verify.status, stderr: verify.stderr }).toEqual({ status: 0, stderr: '' });
  });

  it('restarts on failure but not after exit 2, and keeps the Node heap inside MemoryMax', () => {
    const settings = new Map(serviceSettings());
    expect(settings.get('Restart')).toBe('on-failure');
    expect(settings.get('RestartPreventExitStatus')).toBe('2');
    expect(settings.get('MemoryMax')).toBe('256M');
    const nodeOptions = serviceSettings().find(([k, v]) => k === 'Environment' && v.startsWith('NODE_OPTIONS='))?.[1];
    expect(nodeOptions).toBe(`NODE_OPTIONS="${NODE_OPTIONS.join(' ')}"`);
    expect(serviceSettings()).toContainEqual(['Environment', 'MALLOC_ARENA_MAX=2']);
    // V8's whole heap limit with it (old space and young generation): the rest of 256 MiB is for
    // code, buffers and sockets. Node's own default here would be far above MemoryMax.
    const limit = spawnSync(process.execPath, [...NODE_OPTIONS, '-p', 'v8.getHeapStatistics().heap_size_limit'], { encoding: 'utf8' });
    expect(Number(limit.stdout) / 2 ** 20).toBe(HEAP_LIMIT_MIB);
  });
});

/** The ```sh blocks of a README section, in order. */
function readmeBlocks(heading: string): string[] {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n${heading}\n`);
  const end = readme.indexOf('\n### ', start + heading.length + 2);
  const section = readme.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

const CONFIG = `vantage: { name: systemd-test-vantage }
embeddedCatalogues: false
catalogues: [loop.probes.yaml]
dns: { resolver: "127.0.0.1:53" }
safety: { allow: [127.0.0.0/8, "::1/128", 198.18.0.0/15] }
`;

/** The capabilities this process cannot have (absent from its CapBnd), or null when it may have all. */
function capabilityDrops(): string[] | null {
  const names = ('CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE ' +
    'NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT ' +
    'SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG ' +
    'WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE').split(' ');
  const bounding = BigInt('0x' + /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]!);
  const missing = names.filter((_, bit) => ((bounding >> BigInt(bit)) & 1n) === 0n);
  return missing.length === 0 ? null : missing;
}

/**
 * systemd needs a container it can run in: all capabilities (--privileged where this process has
 * them all; where it lacks some, as in a container, all it has), no seccomp or AppArmor profile of
 * Docker's, and the cgroup tree writable.
 */
function systemdContainerFlags(): string[] {
  const drops = capabilityDrops();
  const privileges = drops === null ? ['--privileged'] : ['--cap-add=ALL', ...drops.map((c) => `--cap-drop=${c}`), '--security-opt=seccomp=unconfined', '--security-opt=apparmor=unconfined'];
  const cgroupV2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const cgroups = cgroupV2 ? ['--cgroupns=private'] : ['--cgroupns=host', '-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw'];
  return [...privileges, ...cgroups, '--tmpfs=/run', '--tmpfs=/run/lock'];
}

/**
 * README's "Installing for systemd", run as written in a Debian 12 container with systemd as PID 1
 * (no network: `--network none`), then the unit exactly as shipped.
 */
describeDocker('the systemd unit, installed as README says, under a real systemd', () => {
  let dir: string;
  let dockerd: Dockerd;
  const exec = (script: string, timeoutMs = 60_000) => dockerd.tryDocker(['exec', 'callprobe-systemd', 'sh', '-c', script], { timeoutMs });
  const show = async (...props: string[]) =>
    Object.fromEntries(
      (await exec(`systemctl show ${props.map((p) => `-p ${p}`).join(' ')} callprobe`)).stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );

  beforeAll(async () => {
    dir = mkdtempSync('/tmp/callprobe-systemd-');
    dockerd = await startDockerd(join(dir, 'dockerd'));
    await nodeBaseImage(dockerd, 'callprobe-systemd-base:test', WITH_SYSTEMD, dir);
    const [install] = readmeBlocks('### Installing for systemd');
    const context = join(dir, 'context');
    const checkout = join(context, 'checkout');
    mkdirSync(checkout, { recursive: true });
    for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'probes', 'config']) cpSync(join(REPO_ROOT, f), join(checkout, f), { recursive: true });
    writeFileSync(join(context, 'install.sh'), install!);
    writeFileSync(join(context, 'callprobe.yaml'), CONFIG);
    writeFileSync(join(context, 'loop.probes.yaml'), SELF_CATALOGUE);
    writeFileSync(
      join(context, 'Dockerfile'),
      `FROM callprobe-systemd-base:test
COPY checkout /root/callprobe
COPY install.sh /root/
RUN cd /root/callprobe && sh -eux /root/install.sh
# The test's own config instead of the example (which probes the embedded catalogues).
COPY callprobe.yaml loop.probes.yaml /etc/callprobe/
ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
`,
    );
    await build(dockerd, 'callprobe-systemd:test', context);
    await dockerd.docker(['run', '-d', '--name=callprobe-systemd', '--network=none', '--pull=never', ...systemdContainerFlags(), 'callprobe-systemd:test']);
    // PID 1 takes a moment to open its bus; then --wait waits for the boot to finish.
    let booted = await exec('systemctl is-system-running --wait', 120_000);
    for (let i = 0; i < 240 && booted.stderr.includes('Failed to connect to bus'); i++) {
      await sleep(250);
      booted = await exec('systemctl is-system-running --wait', 120_000);
    }
    expect(booted.stdout.trim(), booted.stderr).toMatch(/^(running|degraded)$/);
  }, 900_000);
  afterAll(async () => {
    await dockerd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('starts with README\'s command: no capabilities, a seccomp filter, its own user, the heap limit; records and healthy', async () => {
    const [, start] = readmeBlocks('### Installing for systemd');
    const started = await exec(start!, 120_000);
    expect(started.code, started.stdout + started.stderr).toBe(0);
    expect(started.stdout).toBe('/etc/callprobe/callprobe.yaml: ok (1 targets)\n');
    expect(await show('ActiveState', 'SubState', 'UnitFileState')).toEqual({ ActiveState: 'active', SubState: 'running', UnitFileState: 'enabled' });
    const { MainPID } = await show('MainPID');
    const status = (await exec(`grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/${MainPID}/status`)).stdout;
    expect(status).toMatch(/^CapEff:\t0000000000000000$/m);
    expect(status).toMatch(/^CapBnd:\t0000000000000000$/m);
    expect(status).toMatch(/^NoNewPrivs:\t1$/m);
    expect(status).toMatch(/^Seccomp:\t2$/m);
    expect(Number(/^Uid:\t(\d+)/m.exec(status)![1])).toBeGreaterThanOrEqual(61184); // DynamicUser's range
    expect((await exec(`tr '\\0' '\\n' < /proc/${MainPID}/environ | grep -E '^(NODE_OPTIONS|STATE_DIRECTORY|MALLOC_ARENA_MAX)='`)).stdout).toBe(
      `STATE_DIRECTORY=/var/lib/callprobe\nNODE_OPTIONS=${NODE_OPTIONS.join(' ')}\nMALLOC_ARENA_MAX=2\n`,
    );

    let record: ProbeResult | undefined;
    for (let i = 0; i < 120 && !record; i++) {
      const line = (await exec('cat /var/lib/callprobe/records/*.jsonl 2>/dev/null | head -n 1')).stdout.trim();
      record = line ? (JSON.parse(line) as ProbeResult) : undefined;
      if (!record) await sleep(250);
    }
    expect(record).toMatchObject({ vantage: { name: 'systemd-test-vantage' }, service: 'loop', target: 'self', verdict: 'ok' });
    expect((await exec('callprobe healthcheck --config /etc/callprobe/callprobe.yaml')).stdout).toBe('http://127.0.0.1:9465/healthz: 200 ok\n');
    // The process metrics read /proc/self: ProtectProc=invisible and ProcSubset=pid leave it readable.
    const metrics = (await exec(`node -e "fetch('http://127.0.0.1:9465/metrics').then(async (r) => console.log(r.status, await r.text()))"`)).stdout;
    expect(metrics.startsWith('200 ')).toBe(true);
    expect(metrics).toMatch(/^process_resident_memory_bytes [1-9]\d*$/m);
    expect(metrics).toMatch(/^process_open_fds [1-9]\d*$/m);
    expect(metrics).toContain('callprobe_probe_runs_total{service="loop",target="self"} 1');
    // systemd's own view of the running unit agrees with the offline one.
    expect((await exec('systemd-analyze security callprobe.service | tail -n 1')).stdout).toMatch(/: 1\.1 /);
  }, 180_000);

  it('a bad config exits 2 and is not restarted (RestartPreventExitStatus=2)', async () => {
    await exec(': > /etc/callprobe/callprobe.yaml && systemctl restart callprobe');
    let state: Record<string, string> = {};
    for (let i = 0; i < 40 && state.ExecMainStatus !== '2'; i++) {
      await sleep(250);
      state = await show('ActiveState', 'SubState', 'Result', 'ExecMainStatus', 'NRestarts');
    }
    // Without RestartPreventExitStatus it would be activating/auto-restart, again every 30 s.
    expect(state).toEqual({ ActiveState: 'failed', SubState: 'failed', Result: 'exit-code', ExecMainStatus: '2', NRestarts: '0' });
    expect((await exec('journalctl -u callprobe -o cat --no-pager | grep "file is empty"')).stdout).toBe(
      '/etc/callprobe/callprobe.yaml:1:1: the file is empty (nothing but whitespace or comments): write {} for every default\n',
    );
  }, 60_000);
});
