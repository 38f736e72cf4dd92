import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/loader.js';
import { loadPlan } from '../../src/plan/index.js';
import { loadReflectorConfig } from '../../src/reflector/config.js';
import { parseMediaKey } from '../../src/config/media-key.js';

const dir = mkdtempSync(join(tmpdir(), 'callprobe-reflector-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const KEY = '0f'.repeat(32);

function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function problems(file: string): string[] {
  try {
    loadReflectorConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => p.replaceAll(`${dir}/`, ''));
    throw err;
  }
  throw new Error('accepted');
}

describe('reflector config', () => {
  it('fills defaults and makes TLS paths absolute relative to the file', () => {
    const file = write('ok.yaml', `key: "${KEY}"\nlisten:\n  udp: ["0.0.0.0:3480"]\n  tls: [{ listen: "[::]:5349", cert: certs/r.crt, key: /etc/r.key }]\n`);
    const c = loadReflectorConfig(file);
    expect(c.listen).toEqual({ udp: ['0.0.0.0:3480'], tcp: [], tls: [{ listen: '[::]:5349', cert: join(dir, 'certs/r.crt'), key: '/etc/r.key' }] });
    expect(c.limits).toEqual({
      packetsPerSecond: 200,
      packetBurst: 400,
      bytesPerSecond: 65536,
      byteBurst: 131072,
      streamsPerMinute: 30,
      streamMaxBytes: 4194304,
      maxSources: 10000,
      maxFlows: 10000,
      unauthenticatedPacketsPerSecond: 2000,
      unauthenticatedBurst: 2000,
      maxConnections: 1024,
      maxConnectionsPerSource: 16,
      handshakeTimeout: 10000,
      idleTimeout: 60000,
    });
    expect(c.metrics).toEqual({ listen: '127.0.0.1:9467' });
    expect(parseMediaKey(c.key)).toEqual(Buffer.alloc(32, 0x0f));
  });

  it('reports every problem as FILE:LINE:COL', () => {
    const file = write(
      'bad.yaml',
      ['key: "abcd"', 'listen:', '  udp: ["localhost:3480", "1.2.3.4"]', '  sctp: []', 'limits:', '  idleTimeout: soon', '  handshakeTimeout: 0s', 'metrics: { listen: ":9" }', ''].join('\n'),
    );
    expect(problems(file)).toEqual([
      'bad.yaml:1:6: key: must be at least 64 hex digits (32 bytes, e.g. from "openssl rand -hex 32")',
      'bad.yaml:3:9: listen.udp[0]: must be IP:PORT (an IP literal, IPv6 in brackets, and a port)',
      'bad.yaml:3:27: listen.udp[1]: must be IP:PORT (an IP literal, IPv6 in brackets, and a port)',
      'bad.yaml:4:3: listen.sctp: unknown key (not allowed here)',
      'bad.yaml:7:21: limits.handshakeTimeout: must be more than 0 (0 would let a handshake hold a connection forever)',
      'bad.yaml:6:16: limits.idleTimeout: not a duration: "soon" (use e.g. 500ms, 10s, 5m, 1h)',
      'bad.yaml:8:20: metrics.listen: must be IP:PORT (an IP literal, IPv6 in brackets, and a port)',
    ]);
  });

  it('needs a key and at least one listener', () => {
    expect(problems(write('empty.yaml', 'listen: {}\n'))).toEqual([
      'empty.yaml:1:1: key: Invalid input: expected string, received undefined',
      'empty.yaml:1:9: listen: listen on at least one udp, tcp or tls address',
    ]);
  });
});

describe('the probe config carries the same key to the media phases', () => {
  it('media.reflectorKey becomes settings.mediaKey (bytes), absent: null', () => {
    const withKey = write('probe.yaml', `embeddedCatalogues: false\nmedia: { reflectorKey: "${KEY}" }\n`);
    expect(loadPlan(withKey).settings.mediaKey).toEqual(Buffer.alloc(32, 0x0f));
    expect(loadPlan(write('probe-nokey.yaml', 'embeddedCatalogues: false\n')).settings.mediaKey).toBeNull();
  });

  it('a short key is a config error at its line and column', () => {
    const file = write('probe-bad.yaml', 'embeddedCatalogues: false\nmedia:\n  reflectorKey: "0f0f"\n');
    try {
      loadPlan(file);
      throw new Error('accepted');
    } catch (err) {
      expect((err as ConfigError).problems.map((p) => p.replaceAll(`${dir}/`, ''))).toEqual([
        'probe-bad.yaml:3:17: media.reflectorKey: must be at least 64 hex digits (32 bytes, e.g. from "openssl rand -hex 32")',
      ]);
    }
  });
});
