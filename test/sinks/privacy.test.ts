import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PHASES } from '../../src/phases/index.js';
import * as A from '../../src/protocol/stun-attributes.js';
import { METHOD_BINDING, buildMessage, parseMessage } from '../../src/protocol/stun.js';
import type { ProbeResult } from '../../src/result.js';
import { AddressScrubber, installKeyFile, loadInstallKey, ownAddressFilter } from '../../src/sinks/privacy.js';
import { result } from '../helpers/results.js';
import { runOnce, specFor } from '../helpers/spec.js';

/** A fixed key, so that the tokens below are exact. */
const KEY = Buffer.alloc(32, 7);
const scrubber = new AddressScrubber(KEY, PHASES);
const T_LOCAL = scrubber.token('203.0.113.7');
const T_PUBLIC = scrubber.token('198.51.100.9');
const T_RELAY = scrubber.token('192.0.2.44');

describe('AddressScrubber', () => {
  // The hex is HMAC-SHA256(key, IP)'s first 4 bytes (checked with Python's hmac module).
  it('tokens are a keyed hash of the IP, with the family and the port', () => {
    expect([T_LOCAL, T_PUBLIC, T_RELAY]).toEqual(['own-v4:e3d2400b', 'own-v4:44dbc189', 'own-v4:fb420db3']);
    expect(scrubber.token('203.0.113.7', 5000)).toBe(`${T_LOCAL}:5000`);
    // The IPv4-mapped form is the same address; IPv6 says v6.
    expect(scrubber.token('::ffff:203.0.113.7', 5000)).toBe(`${T_LOCAL}:5000`);
    expect(scrubber.token('2001:db8::5', 3478)).toBe('own-v6:48555863:3478');
    // Another install's key gives other tokens: records of two vantages cannot be joined on them.
    expect(new AddressScrubber(Buffer.alloc(32, 8), PHASES).token('203.0.113.7')).not.toBe(T_LOCAL);
  });

  it('replaces the addresses each phase declares, and the same IPs anywhere else in the record', () => {
    const raw = result({ service: 'turn', target: 'mine', reason: 'seen from 198.51.100.9, really' }, [
      {
        phase: 'tcp',
        endpoint: '198.18.2.2:443',
        transport: 'tcp',
        startedAt: 0,
        durationMs: 1,
        ok: true,
        failure: null,
        evidence: { addresses: ['198.18.2.2'], localAddress: '203.0.113.7:41000' },
      },
      {
        phase: 'stun',
        endpoint: '198.18.2.2:3478',
        transport: 'udp',
        startedAt: 1,
        durationMs: 2,
        ok: true,
        failure: null,
        evidence: { localAddress: '203.0.113.7:41001', mappedAddress: '198.51.100.9:61001', mappedEqualsLocal: false, behindNat: true },
      },
      {
        phase: 'turn',
        endpoint: '198.18.2.2:3478',
        transport: 'udp',
        startedAt: 3,
        durationMs: 5,
        ok: false,
        failure: 'relay_timeout',
        evidence: {
          localAddress: '203.0.113.7:41002',
          mappedAddress: '198.51.100.9:61002',
          relayedAddress: '192.0.2.44:50000',
          peerAddress: '198.51.100.9:61003',
          error: 'nothing from 198.51.100.9:61003 via 192.0.2.44:50000 (local 203.0.113.7, mapped [::ffff:198.51.100.9]:61002)',
          // A longer address that merely starts like ours is another address.
          other: '198.51.100.90 and 1198.51.100.9',
        },
      },
      {
        phase: 'media',
        endpoint: '198.18.2.2:3478',
        transport: 'udp',
        startedAt: 8,
        durationMs: 9,
        ok: true,
        failure: null,
        evidence: { relays: [{ localAddress: '203.0.113.7:41004', mappedAddress: '198.51.100.9:61004', relayedAddress: '192.0.2.44:50001', released: true }] },
      },
    ]);
    const scrubbed = scrubber.scrub(raw);
    expect(scrubbed.reason).toBe(`seen from ${T_PUBLIC}, really`);
    expect(scrubbed.phases.map((p) => p.evidence)).toEqual([
      { addresses: ['198.18.2.2'], localAddress: `${T_LOCAL}:41000` },
      { localAddress: `${T_LOCAL}:41001`, mappedAddress: `${T_PUBLIC}:61001`, mappedEqualsLocal: false, behindNat: true },
      {
        localAddress: `${T_LOCAL}:41002`,
        mappedAddress: `${T_PUBLIC}:61002`,
        relayedAddress: `${T_RELAY}:50000`,
        peerAddress: `${T_PUBLIC}:61003`,
        error: `nothing from ${T_PUBLIC}:61003 via ${T_RELAY}:50000 (local ${T_LOCAL}, mapped ${T_PUBLIC}:61002)`,
        other: '198.51.100.90 and 1198.51.100.9',
      },
      { relays: [{ localAddress: `${T_LOCAL}:41004`, mappedAddress: `${T_PUBLIC}:61004`, relayedAddress: `${T_RELAY}:50001`, released: true }] },
    ]);
    // The destinations stay: they are what the record is about.
    expect(scrubbed.phases.map((p) => p.endpoint)).toEqual(raw.phases.map((p) => p.endpoint));
    // The original is untouched, and scrubbing twice changes nothing (records read back are passed again).
    expect(raw.phases[0]!.evidence.localAddress).toBe('203.0.113.7:41000');
    expect(scrubber.scrub(scrubbed)).toEqual(scrubbed);
  });

  it('IPv6: bracketed endpoints keep their port, bare addresses become the bare token', () => {
    const raw = result({}, [
      {
        phase: 'stun',
        endpoint: '[2001:db8::1]:3478',
        startedAt: 0,
        durationMs: 1,
        ok: false,
        failure: 'proto_error',
        evidence: { localAddress: '[2001:db8::5]:5000', mappedAddress: '[2001:db8::5]:5000', error: 'error 403 for 2001:DB8::5 (2001:db8::55 is not us)' },
      },
    ]);
    expect(scrubber.scrub(raw).phases[0]!.evidence).toEqual({
      localAddress: 'own-v6:48555863:5000',
      mappedAddress: 'own-v6:48555863:5000',
      error: 'error 403 for own-v6:48555863 (2001:db8::55 is not us)',
    });
  });

  it('an IP the record probes is a destination: tokenised where declared, never searched for elsewhere', () => {
    // On loopback our socket's address is the target's; a TURN relayed address is on the TURN server.
    const raw = result({}, [
      { phase: 'tcp', endpoint: '127.0.0.1:443', startedAt: 0, durationMs: 1, ok: true, failure: null, evidence: { addresses: ['127.0.0.1'], localAddress: '127.0.0.1:5000' } },
      {
        phase: 'turn',
        endpoint: '198.18.2.2:3478',
        startedAt: 1,
        durationMs: 1,
        ok: false,
        failure: 'relay_timeout',
        evidence: { relayedAddress: '198.18.2.2:50000', mappedAddress: '203.0.113.7:6000', error: 'no data from 198.18.2.2:50000 for 203.0.113.7' },
      },
    ]);
    const scrubbed = scrubber.scrub(raw);
    expect(scrubbed.phases.map((p) => [p.endpoint, p.evidence])).toEqual([
      ['127.0.0.1:443', { addresses: ['127.0.0.1'], localAddress: `${scrubber.token('127.0.0.1')}:5000` }],
      ['198.18.2.2:3478', { relayedAddress: `${scrubber.token('198.18.2.2')}:50000`, mappedAddress: `${T_LOCAL}:6000`, error: `no data from 198.18.2.2:50000 for ${T_LOCAL}` }],
    ]);
  });

  it('a phase that declares nothing keeps its evidence; a value that is no address stays', () => {
    const raw = result({}, [
      { phase: 'tls', endpoint: '198.18.2.2:443', startedAt: 0, durationMs: 1, ok: true, failure: null, evidence: { localAddress: '203.0.113.7:1' } },
      { phase: 'tcp', endpoint: '198.18.2.2:443', startedAt: 0, durationMs: 1, ok: false, failure: 'generic_timeout_error', evidence: { localAddress: 'unknown' } },
    ]);
    expect(scrubber.scrub(raw).phases.map((p) => p.evidence)).toEqual([{ localAddress: '203.0.113.7:1' }, { localAddress: 'unknown' }]);
  });
});

describe('the install key', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-key-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is created once with mode 0600 under state/, then read back; a damaged one is an error naming the file', () => {
    const first = loadInstallKey(dir);
    expect(first).toHaveLength(32);
    expect(statSync(installKeyFile(dir)).mode & 0o777).toBe(0o600);
    expect(readFileSync(installKeyFile(dir), 'utf8')).toBe(first.toString('hex') + '\n');
    expect(loadInstallKey(dir).equals(first)).toBe(true);
    writeFileSync(installKeyFile(dir), 'not a key\n');
    expect(() => loadInstallKey(dir)).toThrow(`${installKeyFile(dir)} is not an install key (64 hex digits): delete it to make a new one (address tokens will change)`);
  });
});

/**
 * The real stun phase on loopback: the server listens on 127.0.0.2 and our socket's source is
 * 127.0.0.1, so our own address appears in the record only where the phase put it (the local
 * address, and the mapped address the server saw).
 */
describe('a record of a phase that saw its own address', () => {
  let dir: string;
  let port: number;
  let close: () => void;
  let record: ProbeResult;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'callprobe-own-'));
    const socket = createSocket('udp4');
    socket.on('message', (msg, from) => {
      const req = parseMessage(Buffer.from(msg));
      const answer = buildMessage({
        method: METHOD_BINDING,
        class: 'success',
        transactionId: req.transactionId,
        attributes: [A.xorMappedAddress({ family: 'IPv4', address: from.address, port: from.port })],
      });
      socket.send(answer, from.port, from.address);
    });
    socket.bind(0, '127.0.0.2');
    await once(socket, 'listening');
    port = socket.address().port;
    close = () => socket.close();
    const run = await runOnce(specFor({ endpoint: { host: '127.0.0.2', port }, phases: [{ stun: { rtoMs: 50, rc: 2, rm: 2 } }] }));
    record = { ...run, verdict: 'ok', control: null, scope: null };
  });
  afterAll(() => {
    close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('contains no own address unless records.keepOwnAddresses opts in', () => {
    const evidence = record.phases[0]!.evidence;
    expect(evidence.localAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(evidence.mappedAddress).toBe(evidence.localAddress);
    const scrub = ownAddressFilter({ dataDir: dir, keepOwnAddresses: false, phases: PHASES });
    const shown = scrub(record);
    expect(JSON.stringify(shown)).not.toContain('127.0.0.1');
    const token = new AddressScrubber(loadInstallKey(dir), PHASES).token('127.0.0.1', Number(String(evidence.localAddress).split(':')[1]));
    expect(shown.phases[0]!.evidence).toMatchObject({ localAddress: token, mappedAddress: token, mappedEqualsLocal: true, behindNat: false });
    expect(shown.phases[0]!.endpoint).toBe(`127.0.0.2:${port}`);
    const kept = ownAddressFilter({ dataDir: dir, keepOwnAddresses: true, phases: PHASES })(record);
    expect(kept).toEqual(record);
  });
});
