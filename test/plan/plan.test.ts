import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { buildPlan, completeChain, loadPlan } from '../../src/plan/index.js';
import { PHASES } from '../../src/phases/index.js';

describe('the embedded plan (computed only: real addresses are never contacted in tests)', () => {
  const plan = loadPlan(null);
  it('lists the Telegram, WhatsApp and control targets', () => {
    const ids = plan.specs.map((s) => s.id);
    expect(ids).toEqual(expect.arrayContaining(['telegram/dc2', 'telegram/ws-dc2', 'whatsapp/web-ws', 'whatsapp/g-5222', 'control/domestic-yandex']));
    expect(new Set(plan.specs.map((s) => s.service))).toEqual(new Set(['control', 'telegram', 'whatsapp']));
    expect(plan.specs.filter((s) => s.control).every((s) => s.service === 'control')).toBe(true);
  });
  it('makes a WebSocket target explicit: dns > tcp > tls > websocket > whatsapp', () => {
    const ws = plan.specs.find((s) => s.id === 'whatsapp/web-ws')!;
    expect(ws.phases.map((p) => [p.name, p.implied ?? false])).toEqual([
      ['dns', true],
      ['tcp', true],
      ['tls', true],
      ['websocket', false],
      ['whatsapp', false],
    ]);
    expect(ws.endpoint).toEqual({ host: 'web.whatsapp.com', port: 443, url: 'wss://web.whatsapp.com/ws/chat' });
    expect(ws.phases[3]!.params).toEqual({ origin: 'https://web.whatsapp.com' });
  });
  it('applies the default schedule where a target sets none', () => {
    const yandex = plan.specs.find((s) => s.id === 'control/domestic-yandex')!;
    expect(yandex.intervalMs).toBe(300_000);
    expect(yandex.phases.every((p) => p.timeoutMs === 10_000)).toBe(true);
    expect(plan.specs.every((s) => s.runDeadlineMs === 120_000)).toBe(true);
  });
  it('the example config is valid and means the defaults', () => {
    const example = loadPlan(join(import.meta.dirname, '..', '..', 'config', 'callprobe.example.yaml'));
    expect(example.config.schedule).toEqual(plan.config.schedule);
    expect(example.specs.length).toBe(plan.specs.length);
  });
});

describe('the shipped controls (computed only)', () => {
  const controls = loadPlan(null).specs.filter((s) => s.control);
  const covering = (phase: string, location: 'domestic' | 'foreign') =>
    controls.filter((s) => s.location === location && s.phases.some((p) => p.name === phase)).map((s) => s.target).sort();

  it('cover every control phase from inside the country and from outside, so an allowlist can be told from a block', () => {
    expect(covering('tls', 'domestic')).toEqual(['domestic-max', 'domestic-ok-calls', 'domestic-yandex']);
    expect(covering('tls', 'foreign')).toEqual(['foreign-example']);
    expect(covering('stun', 'domestic')).toEqual(['domestic-vk-stun']);
    expect(covering('stun', 'foreign')).toEqual(['stun-cloudflare', 'stun-google']);
    expect(controls.every((s) => s.source)).toBe(true);
  });
});

describe('plan options', () => {
  it('filters services but always keeps controls', () => {
    const config = configSchema.parse({ services: ['telegram'] });
    const plan = buildPlan(config, null);
    expect(new Set(plan.specs.map((s) => s.service))).toEqual(new Set(['control', 'telegram']));
  });
  it('takes the resolver and safety lists from the config', () => {
    const config = configSchema.parse({ dns: { resolver: '198.18.2.2:5353' }, safety: { allow: ['198.18.0.0/15'] } });
    const plan = buildPlan(config, null);
    expect(plan.settings.resolver).toEqual({ address: '198.18.2.2', port: 5353 });
    expect(plan.safety).toEqual({ allow: ['198.18.0.0/15'], deny: [], resolvers: ['198.18.2.2'] });
  });
});

describe('completeChain', () => {
  const p = (name: string) => ({ name, params: PHASES.get(name)!.params.parse({}), timeoutMs: 1000 });
  it('adds dns for a hostname and tcp before tls', () => {
    const chain = completeChain([p('tls')], { host: 'example.test', port: 443 }, PHASES);
    expect(chain.map((x) => x.name)).toEqual(['dns', 'tcp', 'tls']);
  });
  it('adds no dns for an IP literal', () => {
    const chain = completeChain([p('tcp')], { host: '198.18.2.2', port: 443 }, PHASES);
    expect(chain.map((x) => x.name)).toEqual(['tcp']);
  });
  it('adds tls under a wss:// websocket but not under ws://', () => {
    expect(completeChain([p('websocket')], { host: '198.18.2.2', port: 443, url: 'wss://198.18.2.2/x' }, PHASES).map((x) => x.name)).toEqual(['tcp', 'tls', 'websocket']);
    expect(completeChain([p('websocket')], { host: '198.18.2.2', port: 80, url: 'ws://198.18.2.2/x' }, PHASES).map((x) => x.name)).toEqual(['tcp', 'websocket']);
  });
});
