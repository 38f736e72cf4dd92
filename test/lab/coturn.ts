import { execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { METHOD_BINDING, buildMessage, newTransactionId } from '../../src/protocol/stun.js';
import type { Lab } from './netns.js';
import { NsProcess } from './proc.js';

/**
 * A real coturn (`turnserver` from Debian, 4.6.1 here), started by a test and stopped by PID:
 * in a lab's server namespace, or on the host's loopback for the phase tests. Flags checked on
 * Debian's 4.6.1:
 * - `-n`: no config file; `--userdb` in a temp dir so nothing touches /var/lib/turn;
 * - `--allow-loopback-peers` makes 4.6.1 exit with 255 unless `--no-cli` (or a CLI password) is
 *   given, and peers on loopback are refused with 403 without it;
 * - TLS needs `--cert`/`--pkey` and listens on `--tls-listening-port`; DTLS is off (callprobe
 *   does not speak it).
 */

export const TURN_USER = 'probe';
export const TURN_PASSWORD = 'secret';
export const TURN_REALM = 'callprobe.test';

export interface CoturnOptions {
  /** Address to listen and relay on: the lab server (198.18.2.2) or 127.0.0.1. */
  ip: string;
  /** More addresses to listen on (same ports): one STUN server standing in for several hosts. */
  alsoListenOn?: string[];
  /** UDP+TCP listening port; default 3478 in a lab (its own namespace), a free port on the host. */
  port?: number;
  /** TLS: certificate and key files; listens on tlsPort (default 5349 in a lab, free on the host). */
  tls?: { certPath: string; keyPath: string };
  tlsPort?: number;
  /** Relay port range; default 40000-40100 in a lab, a random free-looking range on the host. */
  minPort?: number;
  maxPort?: number;
  users?: Array<[string, string]>;
  /** `--user-quota`: concurrent allocations per user. */
  userQuota?: number;
  /** `--denied-peer-ip`: peers the server refuses with 403. */
  deniedPeerIps?: string[];
  allowLoopbackPeers?: boolean;
  /** Hide the SOFTWARE attribute (`--no-software-attribute`). */
  noSoftware?: boolean;
  /** `--stale-nonce=N`: a nonce older than N seconds gets 438 Stale Nonce. */
  staleNonce?: number;
}

export interface Coturn {
  readonly process: NsProcess;
  readonly ip: string;
  readonly port: number;
  readonly tlsPort: number | null;
  readonly minPort: number;
  readonly maxPort: number;
  /** Every log line so far (coturn logs to stdout with --log-file=stdout). */
  log(): string;
  stop(): Promise<void>;
}

/** Why the coturn tests cannot run here, or null when they can. */
export function coturnMissing(): string | null {
  return coturnInstalled() ? null : 'turnserver is not installed (apt-get install -y coturn)';
}

export function coturnInstalled(): boolean {
  try {
    execFileSync('turnserver', ['--help'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch (err) {
    // --help exits non-zero on some builds but still proves the binary runs.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

function args(o: Required<Pick<CoturnOptions, 'ip' | 'minPort' | 'maxPort'>> & CoturnOptions, port: number, tlsPort: number | null, dir: string): string[] {
  const users = o.users ?? [[TURN_USER, TURN_PASSWORD]];
  return [
    '-n',
    `--listening-ip=${o.ip}`,
    ...(o.alsoListenOn ?? []).map((ip) => `--listening-ip=${ip}`),
    `--relay-ip=${o.ip}`,
    `--listening-port=${port}`,
    `--min-port=${o.minPort}`,
    `--max-port=${o.maxPort}`,
    '--lt-cred-mech',
    ...users.map(([u, p]) => `--user=${u}:${p}`),
    `--realm=${TURN_REALM}`,
    '--no-dtls',
    '--no-cli',
    '--fingerprint',
    '--log-file=stdout',
    '--simple-log',
    `--pidfile=${join(dir, 'turnserver.pid')}`,
    `--userdb=${join(dir, 'turndb.sqlite')}`,
    '--no-auth-pings',
    '--no-dynamic-ip-list',
    '--no-dynamic-realms',
    ...(o.tls && tlsPort !== null ? [`--tls-listening-port=${tlsPort}`, `--cert=${o.tls.certPath}`, `--pkey=${o.tls.keyPath}`] : ['--no-tls']),
    ...(o.userQuota !== undefined ? [`--user-quota=${o.userQuota}`] : []),
    ...(o.deniedPeerIps ?? []).map((ip) => `--denied-peer-ip=${ip}`),
    ...(o.allowLoopbackPeers ? ['--allow-loopback-peers'] : []),
    ...(o.noSoftware ? ['--no-software-attribute'] : []),
    ...(o.staleNonce !== undefined ? [`--stale-nonce=${o.staleNonce}`] : []),
  ];
}

/** Starts coturn in the lab's server namespace and waits until its UDP, TCP (and TLS) ports listen. */
export async function startLabCoturn(lab: Lab, opts: CoturnOptions): Promise<Coturn> {
  const o = { minPort: 40000, maxPort: 40100, ...opts };
  const port = o.port ?? 3478;
  const tlsPort = o.tls ? (o.tlsPort ?? 5349) : null;
  const proc = lab.spawn('server', 'turnserver', args(o, port, tlsPort, lab.tmpDir), { ringLines: 2000 });
  for (const ip of [o.ip, ...(o.alsoListenOn ?? [])]) {
    await lab.waitForPort('server', ip, port, 'udp', 10_000, { process: proc });
    await lab.waitForPort('server', ip, port, 'tcp', 10_000, { process: proc });
  }
  if (tlsPort !== null) await lab.waitForPort('server', o.ip, tlsPort, 'tcp', 10_000, { process: proc });
  return handle(proc, o, port, tlsPort);
}

/** Starts coturn on the host's loopback (phase tests): free ports, a temp dir, stopped by PID. */
export async function startLoopbackCoturn(opts: Omit<CoturnOptions, 'ip'> = {}): Promise<Coturn> {
  const dir = mkdtempSync(join(tmpdir(), 'callprobe-coturn-'));
  const port = opts.port ?? (await freePort());
  const tlsPort = opts.tls ? (opts.tlsPort ?? (await freePort())) : null;
  // A random 100-port window: two test files at once rarely share one, and coturn skips busy ports.
  const minPort = opts.minPort ?? 40000 + 100 * Math.floor(Math.random() * 200);
  const o = { ip: '127.0.0.1', minPort, maxPort: opts.maxPort ?? minPort + 99, ...opts };
  const child = spawn('turnserver', args(o, port, tlsPort, dir), { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc = new NsProcess('host', ['turnserver'], child, { ringLines: 2000 });
  void proc.exited.then(() => rmSync(dir, { recursive: true, force: true }));
  try {
    await waitForBinding(o.ip, port, proc);
  } catch (err) {
    await proc.kill();
    throw err;
  }
  return handle(proc, o, port, tlsPort);
}

function handle(proc: NsProcess, o: CoturnOptions & { minPort: number; maxPort: number }, port: number, tlsPort: number | null): Coturn {
  return {
    process: proc,
    ip: o.ip,
    port,
    tlsPort,
    minPort: o.minPort,
    maxPort: o.maxPort,
    log: () => proc.lines.join('\n'),
    stop: async () => {
      await proc.kill();
    },
  };
}

/** A port free for both TCP and UDP on 127.0.0.1 right now. */
async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const udp = createSocket('udp4');
    const ok = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    udp.close();
    if (ok) return port;
  }
}

/** Sends Binding requests until coturn answers one (its UDP listener is up). */
async function waitForBinding(ip: string, port: number, proc: NsProcess, timeoutMs = 10_000): Promise<void> {
  const socket = createSocket('udp4');
  let answered = false;
  socket.on('message', () => {
    answered = true;
  });
  socket.on('error', () => {}); // ECONNREFUSED until it listens
  const deadline = Date.now() + timeoutMs;
  try {
    while (!answered) {
      if (!proc.running) throw new Error(`turnserver exited before listening\n${proc.describe()}`);
      if (Date.now() > deadline) throw new Error(`turnserver did not answer on ${ip}:${port} within ${timeoutMs} ms\n${proc.describe()}`);
      socket.send(buildMessage({ method: METHOD_BINDING, class: 'request', transactionId: newTransactionId() }), port, ip);
      await sleep(50);
    }
  } finally {
    socket.close();
  }
}
