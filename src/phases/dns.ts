import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import * as dnsPacket from 'dns-packet';
import { z } from 'zod';
import { ProbeFailure, type FailureCode } from '../failure.js';
import { formatEndpoint } from '../net/address.js';
import type { PhaseDefinition } from './types.js';

const RECORD_TYPES = ['A', 'AAAA'] as const;
type RecordType = (typeof RECORD_TYPES)[number];

const params = z
  .object({
    types: z.array(z.enum(RECORD_TYPES)).min(1).optional(),
    /** Retransmit an unanswered query after this many ms (UDP loses packets). */
    retransmitMs: z.number().int().min(50).max(10_000).optional(),
    /** Once one type gave usable addresses, wait at most this long for the others. */
    settleMs: z.number().int().min(0).max(10_000).optional(),
  })
  .strict();

/** rcodes (RFC 1035 §4.1.1) that are failures of their own in the taxonomy. */
const RCODE_FAILURES: Readonly<Record<string, FailureCode>> = {
  NXDOMAIN: 'dns_nxdomain_error',
  SERVFAIL: 'dns_servfail_error',
  REFUSED: 'dns_refused_error',
};

const MAX_ANSWERS_IN_EVIDENCE = 16;

interface QueryOutcome {
  type: RecordType;
  rcode: string;
  rttMs: number;
  addresses: string[];
  cnames: string[];
  ttl: number | null;
  truncated: boolean;
}

/**
 * `dns`: asks the configured resolver for A and AAAA over UDP, with our own socket (so the
 * resolver passes the safety guard and the rcode is seen, which the system resolver hides).
 * Any answer in a special-purpose range is `dns_bogon_error`, and the run stops: a bogon is
 * never connected to.
 */
export const dnsPhase: PhaseDefinition<typeof params> = {
  name: 'dns',
  params,
  controlPhase: 'dns',
  needs: 'nothing',
  async run(ctx) {
    const name = ctx.endpoint.host;
    const resolver = ctx.settings.resolver;
    if (!resolver) throw new ProbeFailure('internal_error', 'no DNS resolver configured');
    ctx.guard.assert(resolver.address, 'dns-server');
    ctx.endpointUsed = formatEndpoint(resolver.address, resolver.port);
    ctx.transport = 'udp';
    ctx.evidence.query = name;
    const types = ctx.params.types ?? [...RECORD_TYPES];
    const outcomes = await queryAll({
      name,
      types,
      resolver,
      signal: ctx.signal,
      retransmitMs: ctx.params.retransmitMs ?? 1000,
      settleMs: ctx.params.settleMs ?? 250,
      evidence: ctx.evidence,
    });
    ctx.evidence.answers = outcomes.map((o) => ({ ...o, addresses: o.addresses.slice(0, MAX_ANSWERS_IN_EVIDENCE) }));
    const addresses = outcomes.flatMap((o) => o.addresses);
    ctx.evidence.addresses = addresses.slice(0, MAX_ANSWERS_IN_EVIDENCE);
    ctx.evidence.rcode = outcomes[0]?.rcode ?? null;

    const bogons = addresses.filter((a) => ctx.guard.check(a).bogon);
    if (bogons.length > 0) {
      throw new ProbeFailure('dns_bogon_error', `${name} resolved to special-purpose address ${bogons[0]}`, {
        bogons: bogons.slice(0, MAX_ANSWERS_IN_EVIDENCE),
        rule: ctx.guard.check(bogons[0]!).rule,
      });
    }
    if (addresses.length === 0) {
      const failing = outcomes.find((o) => RCODE_FAILURES[o.rcode] !== undefined);
      if (failing) {
        ctx.evidence.rcode = failing.rcode;
        throw new ProbeFailure(RCODE_FAILURES[failing.rcode]!, `resolver answered ${failing.rcode} for ${name}`);
      }
      throw new ProbeFailure('dns_no_answer', `no ${types.join('/')} record for ${name}`);
    }
    // IPv4 first: most vantage points have it, and the order must be stable for comparisons.
    ctx.state.addresses = [...addresses.filter((a) => isIP(a) === 4), ...addresses.filter((a) => isIP(a) === 6)];
  },
};

interface QueryAllOptions {
  name: string;
  types: RecordType[];
  resolver: { address: string; port: number };
  signal: AbortSignal;
  retransmitMs: number;
  settleMs: number;
  evidence: Record<string, unknown>;
}

function queryAll(o: QueryAllOptions): Promise<QueryOutcome[]> {
  return new Promise((resolve, reject) => {
    const socket: UdpSocket = createSocket(isIP(o.resolver.address) === 6 ? 'udp6' : 'udp4');
    const started = performance.now();
    const pending = new Map<number, { type: RecordType; bytes: Buffer }>();
    const outcomes: QueryOutcome[] = [];
    let bytesSent = 0;
    let bytesReceived = 0;
    let settleTimer: NodeJS.Timeout | undefined;
    const finish = (err?: unknown): void => {
      clearInterval(retransmit);
      clearTimeout(settleTimer);
      o.signal.removeEventListener('abort', onAbort);
      o.evidence.bytesSent = bytesSent;
      o.evidence.bytesReceived = bytesReceived;
      o.evidence.unanswered = [...pending.values()].map((p) => p.type);
      socket.close();
      if (err !== undefined) reject(err);
      else resolve(o.types.flatMap((t) => outcomes.filter((x) => x.type === t)));
    };
    const onAbort = (): void => finish(o.signal.reason);
    if (o.signal.aborted) return onAbort();
    o.signal.addEventListener('abort', onAbort, { once: true });
    const send = (bytes: Buffer): void => {
      bytesSent += bytes.length;
      socket.send(bytes, o.resolver.port, o.resolver.address);
    };
    socket.on('error', (err) => finish(err));
    socket.on('message', (msg, rinfo) => {
      bytesReceived += msg.length;
      if (rinfo.address !== o.resolver.address || rinfo.port !== o.resolver.port) return;
      let packet: dnsPacket.Packet;
      try {
        packet = dnsPacket.decode(msg);
      } catch {
        o.evidence.malformedAnswers = ((o.evidence.malformedAnswers as number | undefined) ?? 0) + 1;
        return;
      }
      const query = packet.id === undefined ? undefined : pending.get(packet.id);
      if (!query || packet.type !== 'response') return;
      pending.delete(packet.id!);
      outcomes.push(toOutcome(query.type, packet, performance.now() - started));
      if (pending.size === 0) return finish();
      if (outcomes.some((x) => x.addresses.length > 0) && settleTimer === undefined) {
        settleTimer = setTimeout(() => finish(), o.settleMs);
      }
    });
    for (const type of o.types) {
      let id = randomInt(0, 0x10000);
      while (pending.has(id)) id = randomInt(0, 0x10000);
      const bytes = dnsPacket.encode({
        type: 'query',
        id,
        flags: dnsPacket.RECURSION_DESIRED,
        questions: [{ type, name: o.name, class: 'IN' }],
      });
      pending.set(id, { type, bytes });
      send(bytes);
    }
    const retransmit = setInterval(() => {
      for (const q of pending.values()) send(q.bytes);
    }, o.retransmitMs);
  });
}

function toOutcome(type: RecordType, packet: dnsPacket.Packet, rttMs: number): QueryOutcome {
  const answers = packet.answers ?? [];
  const addresses: string[] = [];
  const cnames: string[] = [];
  let ttl: number | null = null;
  for (const a of answers) {
    if (a.type === type && typeof a.data === 'string' && isIP(a.data) !== 0) {
      addresses.push(a.data);
      ttl = ttl === null ? (a.ttl ?? null) : Math.min(ttl, a.ttl ?? ttl);
    } else if (a.type === 'CNAME' && typeof a.data === 'string') {
      cnames.push(a.data);
    }
  }
  return {
    type,
    rcode: (packet as { rcode?: string }).rcode ?? 'NOERROR',
    rttMs: Math.round(rttMs * 1000) / 1000,
    addresses,
    cnames,
    ttl,
    truncated: ((packet.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE) !== 0,
  };
}
