/**
 * The config's `turn` section: RFC 7065 URIs or host/port/transport, one `turn/<name>` target per
 * server, and credentials that reach the turn phase without ever entering a spec, a printed plan,
 * a metric or anything JSON or util.inspect shows.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/loader.js';
import { configSchema, turnServerAddress } from '../../src/config/schema.js';
import { buildPlan, loadPlan } from '../../src/plan/index.js';
import { Metrics } from '../../src/sinks/metrics.js';
import type { ProbeResult } from '../../src/result.js';

const SECRET = 'hunter2-turn-secret';
const USER = 'volunteer-user-7';

const base = { embeddedCatalogues: false, dns: { resolver: '127.0.0.1:53' } };

function plan(turn: unknown[], extra: Record<string, unknown> = {}) {
  return buildPlan(configSchema.parse({ ...base, ...extra, turn }), null);
}

describe('turn servers in the config', () => {
  it('parse RFC 7065 URIs: turn: is UDP on 3478, ?transport=tcp is TCP, turns: is TLS on 5349', () => {
    expect(turnServerAddress({ url: 'turn:198.18.2.2' })).toEqual({ host: '198.18.2.2', port: 3478, transport: 'udp' });
    expect(turnServerAddress({ url: 'turn:turn.example.org:443?transport=tcp' })).toEqual({ host: 'turn.example.org', port: 443, transport: 'tcp' });
    expect(turnServerAddress({ url: 'turns:turn.example.org' })).toEqual({ host: 'turn.example.org', port: 5349, transport: 'tls' });
    expect(turnServerAddress({ url: 'turn:[2001:db8::1]:3479?transport=udp' })).toEqual({ host: '2001:db8::1', port: 3479, transport: 'udp' });
    expect(turnServerAddress({ url: 'turns:x.example?transport=udp' })).toBeNull(); // DTLS: not spoken
    expect(turnServerAddress({ url: 'stun:x.example' })).toBeNull();
    expect(turnServerAddress({ host: '198.18.2.2', transport: 'tls' })).toEqual({ host: '198.18.2.2', port: 5349, transport: 'tls' });
  });

  it('become one turn/<name> target each, with the connection phases their transport needs', () => {
    const p = plan([
      { name: 'udp', host: '198.18.2.2', port: 3478, username: USER, password: SECRET },
      { name: 'tcp', url: 'turn:198.18.2.2:3478?transport=tcp', username: USER, password: SECRET },
      { name: 'tls', url: 'turns:turn.example.org', username: USER, password: SECRET, timeout: '30s', interval: '10m' },
    ]);
    const byId = new Map(p.specs.map((s) => [s.id, s]));
    expect([...byId.keys()]).toEqual(['turn/udp', 'turn/tcp', 'turn/tls']);
    expect(byId.get('turn/udp')!.phases.map((x) => [x.name, x.timeoutMs])).toEqual([['turn', 60_000]]);
    expect(byId.get('turn/tcp')!.phases.map((x) => [x.name, x.timeoutMs])).toEqual([
      ['tcp', 10_000],
      ['turn', 60_000],
    ]);
    const tls = byId.get('turn/tls')!;
    expect(tls.phases.map((x) => [x.name, x.timeoutMs])).toEqual([
      ['dns', 10_000],
      ['tcp', 10_000],
      ['tls', 10_000],
      ['turn', 30_000],
    ]);
    expect(tls).toMatchObject({ service: 'turn', target: 'tls', control: false, intervalMs: 600_000, endpoint: { host: 'turn.example.org', port: 5349 } });
    expect(tls.phases[3]!.params).toMatchObject({ transport: 'tls', credential: 'tls' });
  });

  it('keep credentials out of specs, printed plans, util.inspect and metrics; only the phase can read them', () => {
    const p = plan([{ name: 'mine', host: '198.18.2.2', port: 3478, username: USER, password: SECRET }]);
    const shown = [JSON.stringify(p.specs), JSON.stringify(p.settings), inspect(p.settings, { depth: 10 }), inspect(p.specs, { depth: 10 })].join('\n');
    expect(shown).not.toContain(SECRET);
    expect(shown).not.toContain(USER);
    const credential = p.settings.turnCredentials!.get('mine')!;
    expect([credential.username, credential.password]).toEqual([USER, SECRET]);

    const metrics = new Metrics('test');
    metrics.declare(p.specs);
    const result: ProbeResult = {
      schema: 2,
      id: 'x',
      software: { name: 'callprobe', version: '0' },
      vantage: { name: 'test' },
      service: 'turn',
      target: 'mine',
      path: 'calls',
      location: 'foreign',
      startedAt: new Date().toISOString(),
      durationMs: 1,
      phases: [{ phase: 'turn', endpoint: '198.18.2.2:3478', startedAt: 0, durationMs: 1, ok: false, failure: 'turn_unauthorized', evidence: { errorCode: 401 } }],
      verdict: 'blocked',
      failure: 'turn_unauthorized',
      failedPhase: 'turn',
      control: null,
      scope: null,
    };
    metrics.observe(result);
    return metrics.registry.metrics().then((text) => {
      expect(text).toContain('callprobe_probe_failures_total{service="turn",target="mine",phase="turn",code="turn_unauthorized"} 1');
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain(USER);
    });
  });

  it('refuses a bad entry with every problem located', () => {
    expect(() => configSchema.parse({ ...base, turn: [{ name: 'a', url: 'turn:x', host: 'x', username: 'u', password: 'p' }] })).toThrow(/url or host, not both/);
    expect(() => configSchema.parse({ ...base, turn: [{ name: 'a', url: 'turn:x', port: 1, username: 'u', password: 'p' }] })).toThrow(/come from the url/);
    expect(() => configSchema.parse({ ...base, turn: [{ name: 'a', url: 'turns:x?transport=udp', username: 'u', password: 'p' }] })).toThrow(/not a TURN URI/);
    expect(() => configSchema.parse({ ...base, turn: [{ name: 'a', host: 'x', username: 'u' }] })).toThrow();
    expect(() => plan([
      { name: 'a', host: '198.18.2.2', username: 'u', password: 'p' },
      { name: 'a', host: '198.18.2.3', username: 'u', password: 'p' },
    ])).toThrow(/duplicate TURN server "a"/);
  });

  describe('a catalogue target with a turn phase', () => {
    const dir = mkdtempSync(join(tmpdir(), 'callprobe-turncfg-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(
      join(dir, 'relays.yaml'),
      'service: relays\ntargets:\n  - name: r1\n    host: 198.18.2.2\n    port: 3478\n    phases:\n      - turn: { credential: mine }\n',
    );

    it('needs a phase timeout that leaves room to release the allocation', () => {
      writeFileSync(join(dir, 'short.probes.yaml'), 'service: short\ntargets:\n  - name: r2\n    host: 198.18.2.2\n    port: 3478\n    phaseTimeout: 3s\n    phases:\n      - turn: { credential: mine }\n');
      const file = join(dir, 'short.yaml');
      writeFileSync(
        file,
        `embeddedCatalogues: false\ncatalogues: [short.probes.yaml]\ndns: { resolver: "127.0.0.1:53" }\nturn:\n  - { name: mine, host: 198.18.2.2, username: ${USER}, password: ${SECRET} }\n`,
      );
      let problems: string[] = [];
      try {
        loadPlan(file);
      } catch (err) {
        problems = (err as ConfigError).problems;
      }
      expect(problems).toEqual([
        `${join(dir, 'short.probes.yaml')}:3:5: targets[0]: turn: phaseTimeout 3000 ms leaves no room to release the allocation (at least 4200 ms for releaseWaitMs 2000)`,
      ]);
    });

    it('needs credentials of that name in the config', () => {
      const file = join(dir, 'nocreds.yaml');
      writeFileSync(file, 'embeddedCatalogues: false\ncatalogues: [relays.yaml]\ndns: { resolver: "127.0.0.1:53" }\n');
      let problems: string[] = [];
      try {
        loadPlan(file);
      } catch (err) {
        problems = (err as ConfigError).problems;
      }
      expect(problems).toEqual([`${join(dir, 'relays.yaml')}:3:5: targets[0]: turn: needs credentials "mine" in the config's turn section`]);
      const ok = join(dir, 'creds.yaml');
      writeFileSync(
        ok,
        `embeddedCatalogues: false\ncatalogues: [relays.yaml]\ndns: { resolver: "127.0.0.1:53" }\nturn:\n  - { name: mine, host: 198.18.2.2, username: ${USER}, password: ${SECRET} }\n`,
      );
      expect(loadPlan(ok).specs.map((s) => s.id)).toEqual(['relays/r1', 'turn/mine']);
    });
  });
});
