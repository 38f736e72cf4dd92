import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import * as dnsPacket from 'dns-packet';
import { z } from 'zod';
import { roundMs } from '../evidence.js';
import { ProbeFailure, failureOf, type FailureCode } from '../failure.js';
import { abortable } from '../net/abort.js';
import { formatEndpoint } from '../net/address.js';
import type { TrafficCounter } from '../net/trace.js';
import type { Evidence } from '../result.js';
import { checkedSetting } from './kit.js';
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
export const dnsPhase: PhaseDefinition<typeof params, 'nothing'> = {
  name: 'dns',
  params,
  controlPhase: 'dns',
  needs: 'nothing',
  check: (_p, { settings }) =>
    settings.resolver ? null : 'needs a resolver: dns.resolver is "system" and /etc/resolv.conf names none (set dns.resolver to an IP address)',
  async run(ctx) {
    const name = ctx.endpoint.host;
    const resolver = checkedSetting(ctx.settings.resolver, 'dns.resolver');
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
      counter: ctx.trace.counter({ datagrams: true }),
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
    return { addresses: [...addresses.filter((a) => isIP(a) === 4), ...addresses.filter((a) => isIP(a) === 6)] };
  },
};

interface QueryAllOptions {
  name: string;
  types: RecordType[];
  resolver: { address: string; port: number };
  signal: AbortSignal;
  retransmitMs: number;
  settleMs: number;
  evidence: Evidence;
  counter: TrafficCounter;
}

/**
 * One query per type to the resolver, retransmitted while unanswered. A query counts as sent once
 * the kernel took it; one refused on the way out (no route: `network_unreachable`) fails the
 * phase at once rather than after the timeout.
 */
function queryAll(o: QueryAllOptions): Promise<QueryOutcome[]> {
  const socket: UdpSocket = createSocket(isIP(o.resolver.address) === 6 ? 'udp6' : 'udp4');
  const pending = new Map<number, { type: RecordType; bytes: Buffer }>();
  const outcomes: QueryOutcome[] = [];
  let settleTimer: NodeJS.Timeout | undefined;
  let retransmit: NodeJS.Timeout | undefined;
  const started = performance.now();
  return abortable<QueryOutcome[]>(o.signal, (resolve, reject) => {
    const done = (): void => resolve(o.types.flatMap((t) => outcomes.filter((x) => x.type === t)));
    const send = (bytes: Buffer): void => {
      socket.send(bytes, o.resolver.port, o.resolver.address, (err) => {
        if (err) reject(failureOf(err, 'write'));
        else o.counter.sent(bytes.length);
      });
    };
    socket.on('error', (err) => reject(failureOf(err, 'read')));
    socket.on('message', (msg, rinfo) => {
      o.counter.received(msg);
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
      if (pending.size === 0) return done();
      if (outcomes.some((x) => x.addresses.length > 0) && settleTimer === undefined) settleTimer = setTimeout(done, o.settleMs);
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
    retransmit = setInterval(() => {
      for (const q of pending.values()) send(q.bytes);
    }, o.retransmitMs);
    return () => {
      clearInterval(retransmit);
      clearTimeout(settleTimer);
      o.evidence.unanswered = [...pending.values()].map((p) => p.type);
      socket.close();
    };
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
    rttMs: roundMs(rttMs),
    addresses,
    cnames,
    ttl,
    truncated: ((packet.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE) !== 0,
  };
}
