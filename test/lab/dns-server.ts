import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Lab, LabRole } from './netns.js';
import type { NsProcess } from './proc.js';

/**
 * The lab resolver: dnsmasq (Debian package `dnsmasq`, 2.90 here) in the server namespace with
 * no upstream and no host files, answering only what a test configures.
 *
 * Behaviour checked on dnsmasq 2.90 with `--no-resolv --local=/lab.test/ --host-record=...`:
 * - a configured name: NOERROR with its A/AAAA records (several per name are fine);
 * - a configured name asked for a type it lacks (AAAA of an A-only name): NOERROR, no answers;
 * - any other name under a zone (lab.test): NXDOMAIN, also for subdomains of configured names;
 * - a name outside every zone: REFUSED ("not ready": there is no upstream);
 * - `noAnswer` names are forwarded to 127.0.0.1:9 inside the server namespace, where nothing
 *   listens, and dnsmasq then never answers: the client sees a timeout.
 */

export interface DnsServerOptions {
  /** name -> addresses; IPv4 become A records, IPv6 AAAA. Exact names (no wildcards). */
  records: Record<string, string[]>;
  cnames?: Record<string, string>;
  txt?: Record<string, string>;
  /** Names (and their subdomains) for which no answer ever comes back. */
  noAnswer?: string[];
  /** Zones the server is authoritative-like for: unknown names inside get NXDOMAIN. */
  zones?: string[];
  /** Listen address; default the lab's server address 198.18.2.2. */
  address?: string;
  port?: number;
  /** TTL of the answers (dnsmasq --local-ttl); default 0, so nothing caches between tests. */
  ttl?: number;
  role?: LabRole;
}

export interface DnsQueryLog {
  type: string;
  name: string;
  from: string;
}

export interface LabDnsServer {
  address: string;
  port: number;
  process: NsProcess;
  /** Every query dnsmasq logged so far (from --log-queries). */
  queries(): DnsQueryLog[];
  stop(): Promise<void>;
}

const NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$/;

function checkName(name: string): string {
  if (!NAME.test(name)) throw new Error(`not a DNS name: ${JSON.stringify(name)}`);
  return name;
}

/** The dnsmasq argument list for a configuration: exported so tests can see what runs. */
export function dnsmasqArgs(opts: DnsServerOptions & { address: string; port: number; pidFile: string }): string[] {
  const args = [
    '--keep-in-foreground',
    '--no-resolv', // no upstream from /etc/resolv.conf
    '--no-hosts', // no /etc/hosts answers
    '--conf-file=/dev/null',
    `--listen-address=${opts.address}`,
    '--bind-interfaces', // bind only that address, so two servers on two addresses can coexist
    `--port=${opts.port}`,
    `--pid-file=${opts.pidFile}`,
    '--user=root', // no privilege drop: the pid file lives in the lab's root-only (0700) temp dir
    '--log-queries',
    '--log-facility=-', // log to stderr, where NsProcess keeps it
    `--local-ttl=${opts.ttl ?? 0}`,
  ];
  for (const zone of opts.zones ?? ['lab.test']) args.push(`--local=/${checkName(zone)}/`);
  for (const [name, addrs] of Object.entries(opts.records)) {
    checkName(name);
    for (const addr of addrs) {
      if (isIP(addr) === 0) throw new Error(`record ${name}: not an address: ${addr}`);
      args.push(`--host-record=${name},${addr}`);
    }
  }
  for (const [name, target] of Object.entries(opts.cnames ?? {})) args.push(`--cname=${checkName(name)},${checkName(target)}`);
  for (const [name, text] of Object.entries(opts.txt ?? {})) {
    if (/[",\\\n]/.test(text)) throw new Error(`TXT for ${name}: keep it plain (no quotes, commas, backslashes)`);
    args.push(`--txt-record=${checkName(name)},${text}`);
  }
  // Port 9 (discard) on the namespace's own loopback: nothing listens, nothing leaves the lab.
  for (const name of opts.noAnswer ?? []) args.push(`--server=/${checkName(name)}/127.0.0.1#9`);
  return args;
}

/** Parses dnsmasq's `query[A] ok.lab.test from 198.18.1.2` log lines. */
export function parseQueryLog(lines: readonly string[]): DnsQueryLog[] {
  const out: DnsQueryLog[] = [];
  for (const line of lines) {
    const m = /query\[(\w+)\] (\S+) from (\S+)/.exec(line);
    if (m) out.push({ type: m[1]!, name: m[2]!, from: m[3]! });
  }
  return out;
}

/** Starts dnsmasq in the lab and resolves once it listens on UDP. */
export async function startDnsServer(lab: Lab, opts: DnsServerOptions): Promise<LabDnsServer> {
  const address = opts.address ?? lab.server;
  const port = opts.port ?? 53;
  const role = opts.role ?? 'server';
  const pidFile = join(lab.tmpDir, `dnsmasq-${address}-${port}.pid`);
  const proc = lab.spawn(role, 'dnsmasq', dnsmasqArgs({ ...opts, address, port, pidFile }));
  await lab.waitForPort(role, address, port, 'udp', 10_000, { process: proc });
  return {
    address,
    port,
    process: proc,
    queries: () => parseQueryLog(proc.lines),
    stop: async () => {
      await proc.kill();
    },
  };
}
