import dgram from 'node:dgram';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { assertFenced } from './network-fence.js';

/**
 * The fence's own test never needs an outside destination: the decision is tested directly, and
 * the patched methods are tried with 0.0.0.0, which the fence refuses but which, were the fence
 * ever missing, Linux would deliver to this host itself.
 */
describe('the test network fence', () => {
  it('allows loopback and the lab range only', () => {
    for (const ok of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '::ffff:127.0.0.1', '198.18.1.2', '198.19.255.254', 'localhost', undefined]) {
      expect(() => assertFenced(ok, 'reach')).not.toThrow();
    }
    for (const bad of ['10.0.0.53', '192.0.2.1', '198.20.0.1', '2001:db8::1', '0.0.0.0', 'example.com', 'callprobe.invalid']) {
      expect(() => assertFenced(bad, 'reach')).toThrow(/network fence/);
    }
  });
  it('is wired into TCP connect and datagram send', () => {
    const s = new net.Socket();
    expect(() => s.connect(9, '0.0.0.0')).toThrow(/network fence/);
    expect(() => s.connect({ host: '0.0.0.0', port: 9 })).toThrow(/network fence/);
    s.destroy();
    const u = dgram.createSocket('udp4');
    expect(() => u.send(Buffer.from('x'), 9, '0.0.0.0')).toThrow(/network fence/);
    expect(() => u.send(Buffer.from('x'), 9, '127.0.0.1')).not.toThrow();
    u.close();
  });
});
