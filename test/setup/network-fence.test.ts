import dgram from 'node:dgram';
import net from 'node:net';
import { describe, expect, it } from 'vitest';

describe('the test network fence', () => {
  it('throws before a TCP connect leaves loopback or the lab', () => {
    const s = new net.Socket();
    expect(() => s.connect(443, '192.0.2.1')).toThrow(/network fence/);
    expect(() => s.connect({ host: '10.0.0.53', port: 53 })).toThrow(/network fence/);
    expect(() => s.connect({ host: 'example.com', port: 443 })).toThrow(/network fence/);
    s.destroy();
  });
  it('throws before a datagram leaves loopback or the lab', () => {
    const u = dgram.createSocket('udp4');
    expect(() => u.send(Buffer.from('x'), 53, '10.0.0.53')).toThrow(/network fence/);
    u.close();
  });
  it('lets loopback and lab destinations through', () => {
    const u = dgram.createSocket('udp4');
    expect(() => u.send(Buffer.from('x'), 9, '127.0.0.1')).not.toThrow();
    u.close();
  });
});
