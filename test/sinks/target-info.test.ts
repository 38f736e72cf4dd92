import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/sinks/metrics.js';
import { specFor } from '../helpers/spec.js';

describe('callprobe_target_info', () => {
  it('says what each planned target stands for; a reload drops the targets it drops and follows a changed path', async () => {
    const m = new Metrics('lab');
    const dc2 = specFor({ endpoint: { host: '198.18.2.2', port: 443 }, phases: ['tcp'], service: 'telegram', target: 'dc2' });
    const relay = specFor({ endpoint: { host: '198.18.2.3', port: 3478 }, phases: ['stun'], service: 'telegram', target: 'relay' });
    const home = specFor({ endpoint: { host: '198.18.2.4', port: 443 }, phases: ['tcp'], service: 'control', target: 'home', control: true, location: 'domestic' });
    m.declare([dc2, relay, home]);
    const lines = async () => (await m.registry.metrics()).split('\n').filter((l) => l.startsWith('callprobe_target_info{'));
    expect(await lines()).toEqual([
      'callprobe_target_info{service="telegram",target="dc2",path="messaging",location="foreign",control="false"} 1',
      'callprobe_target_info{service="telegram",target="relay",path="calls",location="foreign",control="false"} 1',
      'callprobe_target_info{service="control",target="home",path="messaging",location="domestic",control="true"} 1',
    ]);
    m.declare([{ ...dc2, path: 'calls' }, home]);
    expect(await lines()).toEqual([
      'callprobe_target_info{service="telegram",target="dc2",path="calls",location="foreign",control="false"} 1',
      'callprobe_target_info{service="control",target="home",path="messaging",location="domestic",control="true"} 1',
    ]);
  });
});
