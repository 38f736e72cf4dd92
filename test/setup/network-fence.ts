import dgram from 'node:dgram';
import net from 'node:net';

/**
 * Belt and braces for the test suite: whatever callprobe's own guard decides, a test process may
 * only send to loopback and the lab range (198.18.0.0/15). Anything else throws before a packet
 * leaves, so a mistake in a test (or in the guard) fails loudly instead of reaching a network.
 * Processes started inside lab namespaces are fenced by the namespaces' routes instead.
 */
const FENCE = new net.BlockList();
FENCE.addSubnet('127.0.0.0', 8, 'ipv4');
FENCE.addSubnet('198.18.0.0', 15, 'ipv4');
FENCE.addAddress('::1', 'ipv6');

/** Exported for the fence's own test, which must never need a real outside destination. */
export function assertFenced(host: unknown, what: string): void {
  if (host === undefined || host === null || host === 'localhost') return; // Node defaults to loopback
  if (typeof host !== 'string') return;
  const bare = host.replace(/^\[|\]$/g, '').replace(/^::ffff:/i, '');
  const family = net.isIP(bare);
  if (family !== 0 && FENCE.check(bare, family === 4 ? 'ipv4' : 'ipv6')) return;
  throw new Error(`network fence: test tried to ${what} ${host}; only loopback and 198.18.0.0/15 are allowed in tests`);
}

const PATCHED = Symbol.for('callprobe.networkFence');
const patched = (globalThis as Record<symbol, unknown>)[PATCHED] === true;
(globalThis as Record<symbol, unknown>)[PATCHED] = true;

const connect = net.Socket.prototype.connect;
if (!patched) net.Socket.prototype.connect = function fencedConnect(this: net.Socket, ...args: unknown[]) {
  const first = args[0];
  if (Array.isArray(first)) {
    const opts = first[0] as { host?: string; path?: string } | undefined;
    if (opts && !opts.path) assertFenced(opts.host ?? 'localhost', 'connect to');
  } else if (typeof first === 'object' && first !== null) {
    const opts = first as { host?: string; path?: string };
    if (!opts.path) assertFenced(opts.host ?? 'localhost', 'connect to');
  } else if (typeof first === 'number') {
    assertFenced(typeof args[1] === 'string' ? args[1] : 'localhost', 'connect to');
  }
  return (connect as (...a: unknown[]) => net.Socket).apply(this, args);
} as typeof connect;

const send = dgram.Socket.prototype.send;
if (!patched) dgram.Socket.prototype.send = function fencedSend(this: dgram.Socket, ...args: unknown[]) {
  // send(msg, [offset, length,] port, address, cb): the address is the first string argument.
  const address = args.slice(1).find((a) => typeof a === 'string');
  const connected = (() => {
    try {
      return this.remoteAddress().address;
    } catch {
      return undefined;
    }
  })();
  assertFenced(address ?? connected ?? 'localhost', 'send a datagram to');
  return (send as (...a: unknown[]) => void).apply(this, args);
} as typeof send;

const dconnect = dgram.Socket.prototype.connect;
if (!patched) dgram.Socket.prototype.connect = function fencedDgramConnect(this: dgram.Socket, ...args: unknown[]) {
  assertFenced(typeof args[1] === 'string' ? args[1] : 'localhost', 'connect a datagram socket to');
  return (dconnect as (...a: unknown[]) => void).apply(this, args);
} as typeof dconnect;
