import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetyGuard } from '../../src/engine/guard.js';
import { loadPlan } from '../../src/plan/index.js';
import { loadReflectorConfig } from '../../src/reflector/config.js';

const CONFIG = join(import.meta.dirname, '..', '..', 'config');

/** The shipped examples stay valid (computed only: nothing here is contacted). */
describe('shipped examples', () => {
  const dir = mkdtempSync(join(tmpdir(), 'callprobe-examples-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the media catalogue plans with a key, and its placeholder address is refused by the guard', () => {
    const file = join(dir, 'c.yaml');
    writeFileSync(
      file,
      `embeddedCatalogues: false\ncatalogues: [${join(CONFIG, 'media.example.probes.yaml')}]\ndns: { resolver: "127.0.0.1:53" }\nmedia: { reflectorKey: ${'ab'.repeat(32)} }\n`,
    );
    const plan = loadPlan(file);
    expect(plan.specs.map((s) => s.id)).toEqual(['calls/whatsapp-media', 'calls/telegram-media', 'calls/call-diagnosis', 'calls/rate-sweep', 'calls/tcp-freeze', 'calls/tcp-freeze-upload']);
    const guard = new SafetyGuard(plan.safety);
    expect(guard.check('203.0.113.10')).toEqual({ allowed: false, rule: 'special-purpose 203.0.113.0/24 (documentation)', bogon: true });
    // The domestic reflector of the diagnosis target is a placeholder too.
    expect(guard.check('198.51.100.20')).toEqual({ allowed: false, rule: 'special-purpose 198.51.100.0/24 (documentation)', bogon: true });
  });

  it('the reflector example is valid once its placeholder key is replaced, and refused before', () => {
    const example = join(CONFIG, 'reflector.example.yaml');
    expect(() => loadReflectorConfig(example)).toThrow(/reflector\.example\.yaml:6:6: key: /);
    const file = join(dir, 'reflector.yaml');
    writeFileSync(file, readFileSync(example, 'utf8').replace(/^key: .*$/m, `key: "${'cd'.repeat(32)}"`));
    const config = loadReflectorConfig(file);
    expect(config.listen.udp).toEqual(['0.0.0.0:3480']);
    expect(config.limits.packetsPerSecond).toBe(200);
  });
});
