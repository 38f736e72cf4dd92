/**
 * werift-ice's TURN client (a maintained TypeScript implementation, independent of callprobe's
 * codec) in a lab namespace, as a cross-check of what the `turn` phase reports:
 *
 *   node --import tsx test/lab/clients/werift-turn.ts --server 198.18.2.2 --port 3478 --user U --password P [--peer 198.18.1.2] [--hold]
 *
 * Allocates over UDP, and with --peer relays one datagram through the allocation to a socket of
 * its own bound on that address. Prints `READY {"relayed":..,"mapped":..,"realm":..,"peerReceived":..}`;
 * with --hold it then keeps the allocation (werift refreshes it) until SIGTERM, without releasing
 * it, so a test can fill a user's quota.
 */
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { createTurnClient } from 'werift-ice';

const { values } = parseArgs({
  options: {
    server: { type: 'string' },
    port: { type: 'string', default: '3478' },
    user: { type: 'string' },
    password: { type: 'string' },
    peer: { type: 'string' },
    hold: { type: 'boolean', default: false },
  },
});
if (!values.server || !values.user || !values.password) throw new Error('--server, --user and --password are required');

const turn = await createTurnClient({ address: [values.server, Number(values.port)], username: values.user, password: values.password }, { transport: 'udp' });
let peerReceived: { data: string; from: string } | null = null;
if (values.peer) {
  const peer = createSocket('udp4');
  peer.bind(0, values.peer);
  await once(peer, 'listening');
  const got = once(peer, 'message');
  await turn.sendData(Buffer.from('werift-through-coturn'), [values.peer, peer.address().port]);
  const [msg, rinfo] = (await Promise.race([got, new Promise((_, reject) => setTimeout(() => reject(new Error('no relayed datagram')), 3000))])) as [
    Buffer,
    { address: string; port: number },
  ];
  peerReceived = { data: msg.toString(), from: `${rinfo.address}:${rinfo.port}` };
  peer.close();
}
const info = { relayed: turn.relayedAddress.join(':'), mapped: turn.mappedAddress.join(':'), realm: turn.realm ?? null, peerReceived };
console.log(`READY ${JSON.stringify(info)}`);
if (values.hold) {
  process.on('SIGTERM', () => process.exit(0));
  setInterval(() => {}, 60_000);
} else {
  await turn.close();
  process.exit(0);
}
