import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { BlockList, isIPv4 } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  NsProcess,
  runProcess,
  spawnInNamespace,
  waitForPort,
  type Proto,
  type RunResult,
  type SpawnOptions,
  type WaitForPortOptions,
} from './proc.js';

/**
 * The lab topology (test/lab/README.md), one set of namespaces per createLab():
 *
 *   [client] 198.18.1.2 ── veth ── 198.18.1.1 [censor] 198.18.2.1 ── veth ── 198.18.2.2 [server]
 *
 * Every lab uses the same addresses: each namespace has its own interfaces, routes and
 * conntrack, so two labs never see each other (lab.test.ts checks this with two labs at once).
 * Only the names carry a per-run suffix, because namespace names are global (/run/netns).
 * Nothing here touches the default namespace: every `ip` command runs with `-n NS` or inside
 * `ip netns exec NS`, and veth pairs are created from inside the client/censor namespace.
 */

const run = promisify(execFile);

/** Benchmarking range (RFC 2544 App. C.2.2, RFC 6890 §2.2.2): not globally routed. */
export const LAB_RANGE = '198.18.0.0/15';
export const LAB_ADDRESSES = {
  client: '198.18.1.2',
  censorClientSide: '198.18.1.1',
  censorServerSide: '198.18.2.1',
  server: '198.18.2.2',
} as const;
const CLIENT_NET = '198.18.1.0/24';
const SERVER_NET = '198.18.2.0/24';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type LabRole = 'client' | 'censor' | 'server';
const ROLES: readonly LabRole[] = ['client', 'censor', 'server'];

export interface LabOptions {
  /**
   * More addresses for the server namespace. Inside 198.18.2.0/24 they are secondary addresses
   * on the server link; elsewhere in 198.18.0.0/15 (e.g. 198.19.0.10) they go on the server's
   * loopback with a /32 route in the censor, so a test can have "another network".
   */
  serverAddresses?: string[];
  /** SIGTERM → SIGKILL grace for processes at destroy(). */
  killGraceMs?: number;
  /**
   * Nameserver for the client namespace's system resolver (getaddrinfo, dns.lookup): written to
   * /etc/netns/<client>/resolv.conf, which `ip netns exec` bind-mounts over /etc/resolv.conf.
   * Usually the lab DNS server, 198.18.2.2. Without it, lookups go to the host's nameserver
   * address, which the sealed lab cannot reach (the censor has no route out).
   */
  clientResolver?: string;
}

export interface LabNames {
  id: string;
  client: string;
  censor: string;
  server: string;
  /** veth ends: client side, censor towards client, censor towards server, server side. */
  clientIf: string;
  censorClientIf: string;
  censorServerIf: string;
  serverIf: string;
}

export interface RunOptions extends Omit<SpawnOptions, 'captureAll'> {
  timeoutMs?: number;
}

const NS_PATTERN = /^cp-([0-9a-z]+)-([0-9a-z]+)-(client|censor|server)$/;
const TMP_PATTERN = /^callprobe-lab-([0-9a-z]+)-[0-9a-z]+-\w+$/;
let labCounter = 0;

function labNames(): LabNames {
  // The creator's PID is in the name so a later run can sweep labs whose creator died (SIGKILL).
  const tag = `${(labCounter++).toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36).padStart(3, '0')}`;
  const id = `${process.pid.toString(36)}-${tag}`;
  // Interface names must fit IFNAMSIZ-1 = 15 chars (linux/if.h). They need not be unique across
  // labs (each is created inside its lab's namespaces); the tag only helps read captures.
  const ifTag = tag.slice(-7);
  return {
    id,
    client: `cp-${id}-client`,
    censor: `cp-${id}-censor`,
    server: `cp-${id}-server`,
    clientIf: `cp${ifTag}c0`,
    censorClientIf: `cp${ifTag}m0`,
    censorServerIf: `cp${ifTag}m1`,
    serverIf: `cp${ifTag}s0`,
  };
}

const labRange = new BlockList();
labRange.addSubnet('198.18.0.0', 15, 'ipv4');
const serverNet = new BlockList();
serverNet.addSubnet('198.18.2.0', 24, 'ipv4');

const clientNet = new BlockList();
clientNet.addSubnet('198.18.1.0', 24, 'ipv4');

/** Extra server addresses must stay in the lab range and not collide with the topology. */
function checkServerAddresses(addrs: readonly string[]): void {
  const taken = new Set<string>(Object.values(LAB_ADDRESSES));
  for (const addr of addrs) {
    if (!isIPv4(addr) || !labRange.check(addr, 'ipv4')) {
      throw new Error(`lab server address ${addr} is outside ${LAB_RANGE}`);
    }
    if (clientNet.check(addr, 'ipv4')) throw new Error(`lab server address ${addr} is on the client network ${CLIENT_NET}`);
    if (taken.has(addr)) throw new Error(`lab server address ${addr} is already in use`);
    taken.add(addr);
  }
}

async function ip(args: string[]): Promise<string> {
  try {
    const { stdout } = await run('ip', args, { timeout: 10_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function namespacePids(ns: string): Promise<number[]> {
  try {
    const { stdout } = await run('ip', ['netns', 'pids', ns], { timeout: 5000 });
    return stdout.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function namespacePidsSync(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function killPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

/** Per-namespace files that `ip netns exec` bind-mounts over /etc (ip-netns(8)). */
const netnsEtc = (ns: string) => join('/etc/netns', ns);

/** Kills whatever still runs in the namespace, then deletes it. Missing namespaces are fine. */
async function deleteNamespace(ns: string): Promise<void> {
  for (const pid of await namespacePids(ns)) killPid(pid, 'SIGKILL');
  await rm(netnsEtc(ns), { recursive: true, force: true });
  try {
    await run('ip', ['netns', 'delete', ns], { timeout: 10_000 });
  } catch (err) {
    const msg = (err as { stderr?: string }).stderr ?? '';
    if (!/No such file|does not exist/i.test(msg)) throw new Error(`ip netns delete ${ns} failed: ${msg.trim()}`);
  }
}

function deleteNamespaceSync(ns: string): void {
  for (const pid of namespacePidsSync(ns)) killPid(pid, 'SIGKILL');
  rmSync(netnsEtc(ns), { recursive: true, force: true });
  try {
    execFileSync('ip', ['netns', 'delete', ns], { timeout: 10_000, stdio: 'ignore' });
  } catch {
    // best effort at exit
  }
}

async function listNamespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list'], { timeout: 5000 });
  // Lines look like "name" or "name (id: 3)".
  return stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter(Boolean);
}

/**
 * Deletes lab namespaces (cp-<pid36>-<tag>-<role>) whose creating process is gone, e.g. after a
 * test worker was SIGKILLed before its exit handler could run. Returns the names removed.
 */
export async function sweepStaleLabs(): Promise<string[]> {
  const stale = (pid36: string) => {
    const pid = parseInt(pid36, 36);
    return pid !== process.pid && !isAlive(pid);
  };
  const removed: string[] = [];
  for (const ns of await listNamespaces()) {
    const m = NS_PATTERN.exec(ns);
    if (!m || !stale(m[1]!)) continue;
    await deleteNamespace(ns);
    removed.push(ns);
  }
  for (const entry of await readdir(tmpdir())) {
    const m = TMP_PATTERN.exec(entry);
    if (m && stale(m[1]!)) await rm(join(tmpdir(), entry), { recursive: true, force: true });
  }
  return removed;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export const LAB_NEEDS_ROOT = 'lab tests need root (network namespaces): run `sudo npm test`';

/** Why this process cannot build labs, or null when it can (root on Linux, iproute2, nftables, dnsmasq). */
export function labUnavailableReason(): string | null {
  if (process.platform !== 'linux' || !isRoot()) return LAB_NEEDS_ROOT;
  const tools: Array<[string, string[]]> = [
    ['ip', ['netns', 'list']],
    ['nft', ['--version']],
    ['dnsmasq', ['--version']],
    ['openssl', ['version']],
    ['ss', ['--version']],
  ];
  for (const [tool, args] of tools) {
    try {
      execFileSync(tool, args, { stdio: 'ignore', timeout: 5000 });
    } catch {
      return `lab tests need \`${tool}\` (apt-get install -y iproute2 nftables dnsmasq openssl)`;
    }
  }
  return null;
}

export function labAvailable(): boolean {
  return labUnavailableReason() === null;
}

const liveLabs = new Set<Lab>();
let exitHooksInstalled = false;
const EXIT_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function destroyAllSync(): void {
  for (const lab of [...liveLabs]) lab.destroySync();
}

function onSignal(sig: NodeJS.Signals): void {
  destroyAllSync();
  uninstallExitHooks();
  // Re-raise so the default action (exit) still happens, unless someone else handles it.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', destroyAllSync);
  for (const sig of EXIT_SIGNALS) process.on(sig, onSignal);
}

function uninstallExitHooks(): void {
  if (!exitHooksInstalled) return;
  exitHooksInstalled = false;
  process.off('exit', destroyAllSync);
  for (const sig of EXIT_SIGNALS) process.off(sig, onSignal);
}

/** One lab: three namespaces, their links, and every process started in them. */
export class Lab {
  readonly client = LAB_ADDRESSES.client;
  readonly server = LAB_ADDRESSES.server;
  readonly censorClientSide = LAB_ADDRESSES.censorClientSide;
  readonly censorServerSide = LAB_ADDRESSES.censorServerSide;
  /** The primary server address followed by opts.serverAddresses. */
  readonly serverAddresses: readonly string[];
  /** Scratch directory for this lab (certificates, pid files, configs); removed by destroy(). */
  readonly tmpDir: string;
  private readonly processes = new Set<NsProcess>();
  private readonly createdNamespaces: string[] = [];
  private destroying: Promise<void> | null = null;
  private readonly killGraceMs: number;
  private readonly clientResolver: string | undefined;

  constructor(
    readonly names: LabNames,
    opts: LabOptions,
  ) {
    this.serverAddresses = [LAB_ADDRESSES.server, ...(opts.serverAddresses ?? [])];
    this.killGraceMs = opts.killGraceMs ?? 2000;
    this.clientResolver = opts.clientResolver;
    this.tmpDir = mkdtempSync(join(tmpdir(), `callprobe-lab-${names.id}-`));
  }

  get destroyed(): boolean {
    return this.destroying !== null;
  }

  /** Namespace name for a role. */
  ns(role: LabRole): string {
    return this.names[role];
  }

  /** Starts a long-running process in a namespace; destroy() will kill it. */
  spawn(role: LabRole, cmd: string, args: readonly string[], opts: SpawnOptions = {}): NsProcess {
    if (this.destroying) throw new Error(`lab ${this.names.id} is destroyed`);
    const proc = spawnInNamespace(this.ns(role), cmd, args, { cwd: REPO_ROOT, ...opts });
    this.processes.add(proc);
    void proc.exited.then(() => this.processes.delete(proc));
    return proc;
  }

  /** Starts a TypeScript script with `node --import tsx` (cwd: repo root). */
  spawnNode(role: LabRole, script: string, args: readonly string[] = [], opts: SpawnOptions = {}): NsProcess {
    return this.spawn(role, process.execPath, ['--import', 'tsx', script, ...args], opts);
  }

  /** Runs a command to completion; never rejects on a non-zero exit (look at code/timedOut). */
  async run(role: LabRole, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const { timeoutMs = 30_000, ...spawnOpts } = opts;
    return runProcess(this.spawn(role, cmd, args, { ...spawnOpts, captureAll: true }), timeoutMs);
  }

  /** `run` for a TypeScript script with `node --import tsx`. */
  runNode(role: LabRole, script: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    return this.run(role, process.execPath, ['--import', 'tsx', script, ...args], opts);
  }

  /** Runs a command and returns its stdout; rejects with stderr when it fails. */
  async exec(role: LabRole, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
    const res = await this.run(role, cmd, args, { timeoutMs: 15_000, ...opts });
    if (res.code !== 0 || res.timedOut) {
      const how = res.timedOut ? 'timed out' : res.signal ? `killed by ${res.signal}` : `exited ${res.code}`;
      throw new Error(`[${this.ns(role)}] ${cmd} ${args.join(' ')} ${how}: ${res.stderr.trim() || res.stdout.trim()}`);
    }
    return res.stdout;
  }

  waitForPort(
    role: LabRole,
    host: string,
    port: number,
    proto: Proto = 'tcp',
    timeoutMs = 10_000,
    opts: WaitForPortOptions = {},
  ): Promise<void> {
    return waitForPort(this.ns(role), host, port, proto, timeoutMs, opts);
  }

  /**
   * Makes every packet the censor sees one TCP segment, as on a real wire. A veth passes the
   * sender's TSO/GSO super-packets (up to 64 KiB) through whole, so nft's packet counters (`ct
   * packets`, a rule's counter) would count one for tens of segments; a GSO limit of one segment
   * on every veth end makes the kernel cut segments before they leave. Byte counts are the same
   * either way (one header per packet counted).
   */
  async oneSegmentPerPacket(): Promise<void> {
    const n = this.names;
    const ends: Array<[LabRole, string]> = [
      ['client', n.clientIf],
      ['censor', n.censorClientIf],
      ['censor', n.censorServerIf],
      ['server', n.serverIf],
    ];
    for (const [role, dev] of ends) await ip(['-n', this.ns(role), 'link', 'set', 'dev', dev, 'gso_max_segs', '1']);
  }

  /** Processes started by this lab that are still running. */
  get runningProcesses(): readonly NsProcess[] {
    return [...this.processes].filter((p) => p.running);
  }

  /** Kills every process (SIGTERM, then SIGKILL after the grace), deletes the namespaces. Idempotent. */
  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  /** The same, synchronously and with SIGKILL at once: for process exit and signal handlers. */
  destroySync(): void {
    this.destroying ??= Promise.resolve();
    for (const p of this.processes) p.killSync();
    for (const ns of this.createdNamespaces) deleteNamespaceSync(ns);
    rmSync(this.tmpDir, { recursive: true, force: true });
    this.forget();
  }

  private async teardown(): Promise<void> {
    const errors: unknown[] = [];
    await Promise.all([...this.processes].map((p) => p.kill(this.killGraceMs)));
    for (const ns of this.createdNamespaces) {
      try {
        await deleteNamespace(ns);
      } catch (err) {
        errors.push(err);
      }
    }
    await rm(this.tmpDir, { recursive: true, force: true });
    this.forget();
    if (errors.length > 0) throw new AggregateError(errors, `lab ${this.names.id} teardown was incomplete`);
  }

  private forget(): void {
    liveLabs.delete(this);
    if (liveLabs.size === 0) uninstallExitHooks();
  }

  /** @internal used by createLab */
  async build(): Promise<void> {
    const n = this.names;
    for (const role of ROLES) {
      await addNamespace(n[role]);
      this.createdNamespaces.push(n[role]);
      await ip(['-n', n[role], 'link', 'set', 'lo', 'up']);
    }
    // Created from inside the client/censor namespaces, so no end ever exists in the host's.
    await ip(['-n', n.client, 'link', 'add', n.clientIf, 'type', 'veth', 'peer', 'name', n.censorClientIf, 'netns', n.censor]);
    await ip(['-n', n.censor, 'link', 'add', n.censorServerIf, 'type', 'veth', 'peer', 'name', n.serverIf, 'netns', n.server]);
    await ip(['-n', n.client, 'addr', 'add', `${LAB_ADDRESSES.client}/24`, 'dev', n.clientIf]);
    await ip(['-n', n.censor, 'addr', 'add', `${LAB_ADDRESSES.censorClientSide}/24`, 'dev', n.censorClientIf]);
    await ip(['-n', n.censor, 'addr', 'add', `${LAB_ADDRESSES.censorServerSide}/24`, 'dev', n.censorServerIf]);
    await ip(['-n', n.server, 'addr', 'add', `${LAB_ADDRESSES.server}/24`, 'dev', n.serverIf]);
    const elsewhere: string[] = [];
    for (const addr of this.serverAddresses.slice(1)) {
      if (serverNet.check(addr, 'ipv4')) {
        await ip(['-n', n.server, 'addr', 'add', `${addr}/24`, 'dev', n.serverIf]);
      } else {
        await ip(['-n', n.server, 'addr', 'add', `${addr}/32`, 'dev', 'lo']);
        elsewhere.push(addr);
      }
    }
    await ip(['-n', n.client, 'link', 'set', n.clientIf, 'up']);
    await ip(['-n', n.censor, 'link', 'set', n.censorClientIf, 'up']);
    await ip(['-n', n.censor, 'link', 'set', n.censorServerIf, 'up']);
    await ip(['-n', n.server, 'link', 'set', n.serverIf, 'up']);
    await ip(['-n', n.client, 'route', 'add', 'default', 'via', LAB_ADDRESSES.censorClientSide]);
    await ip(['-n', n.server, 'route', 'add', 'default', 'via', LAB_ADDRESSES.censorServerSide]);
    // A gateway must be on an up link, so these routes come after the links.
    for (const addr of elsewhere) {
      await ip(['-n', n.censor, 'route', 'add', `${addr}/32`, 'via', LAB_ADDRESSES.server]);
    }
    // Per-namespace sysctl: /proc/sys/net belongs to the namespace the writer is in.
    await this.exec('censor', 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    if (this.clientResolver) {
      await mkdir(netnsEtc(n.client), { recursive: true });
      // One try, one second: a lab scenario that blackholes DNS should fail fast, not in 30 s.
      await writeFile(join(netnsEtc(n.client), 'resolv.conf'), `nameserver ${this.clientResolver}\noptions timeout:1 attempts:1\n`);
    }
  }

  /** @internal */
  register(): void {
    liveLabs.add(this);
    installExitHooks();
  }
}

/** `ip netns add`, and if a leftover of the same name is in the way, delete it and retry once. */
async function addNamespace(ns: string): Promise<void> {
  try {
    await ip(['netns', 'add', ns]);
  } catch (first) {
    await deleteNamespace(ns);
    try {
      await ip(['netns', 'add', ns]);
    } catch (second) {
      throw new AggregateError([first, second], `cannot create namespace ${ns}`);
    }
  }
}

/** Builds a fresh lab. On any failure it removes what it had created and rethrows. */
export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  checkServerAddresses(opts.serverAddresses ?? []);
  if (opts.clientResolver !== undefined && !(isIPv4(opts.clientResolver) && labRange.check(opts.clientResolver, 'ipv4'))) {
    throw new Error(`clientResolver ${opts.clientResolver} is outside ${LAB_RANGE}`);
  }
  await sweepStaleLabs().catch(() => []);
  const lab = new Lab(labNames(), opts);
  lab.register(); // before build(): a crash mid-build must still clean up at exit
  try {
    await lab.build();
  } catch (err) {
    await lab.destroy().catch(() => {});
    throw err;
  }
  return lab;
}

export { SERVER_NET, CLIENT_NET };
