/**
 * node-stun's RFC 3489 server (an independent classic STUN implementation) for the lab. It wants
 * two addresses and two ports (RFC 3489 §8.1: CHANGE-REQUEST answers come from the other ones):
 *
 *   node --import tsx test/lab/servers/node-stun-server.ts --primary 198.18.2.3 --secondary 198.18.2.4 --port 3478 --port2 3479
 *
 * Prints `READY {...}` once its four sockets listen (the startNodeServer protocol).
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { primary: { type: 'string' }, secondary: { type: 'string' }, port: { type: 'string', default: '3478' }, port2: { type: 'string', default: '3479' } },
});
if (!values.primary || !values.secondary) throw new Error('--primary and --secondary addresses are required');

// node-stun is CommonJS without types: createServer(config) -> EventEmitter with listen()/close().
const require = createRequire(import.meta.url);
const stun = require('node-stun') as {
  createServer(config: Record<string, { host: string; port: string }>): {
    on(event: 'log', fn: (log: { level: string; message: string }) => void): void;
    listen(): void;
    close(): void;
  };
};
const server = stun.createServer({
  primary: { host: values.primary, port: values.port! },
  secondary: { host: values.secondary, port: values.port2! },
});
let listening = 0;
server.on('log', (log) => {
  if (/listening on/.test(log.message) && ++listening === 4) {
    console.log(`READY ${JSON.stringify({ listeners: [{ name: 'primary', port: Number(values.port) }, { name: 'secondary', port: Number(values.port2) }] })}`);
  }
});
server.listen();
process.on('SIGTERM', () => {
  server.close();
  process.exit(0);
});
