import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import * as A from '../../src/protocol/stun-attributes.js';
import { buildMessage, parseMessage, type StunMessage } from '../../src/protocol/stun.js';
import { longTermKey } from '../../src/protocol/turn.js';
import { TURN_PASSWORD, TURN_REALM, TURN_USER } from '../lab/coturn.js';

export interface ScriptedServer {
  port: number;
  requests: StunMessage[];
  close(): void;
}

/** A scripted TURN server on loopback UDP: `script` answers the n-th request (1-based) with these datagrams. */
export async function scriptedServer(script: (req: StunMessage, n: number) => Buffer[]): Promise<ScriptedServer> {
  const socket: UdpSocket = createSocket('udp4');
  const requests: StunMessage[] = [];
  socket.on('message', (msg, rinfo) => {
    const req = parseMessage(Buffer.from(msg));
    requests.push(req);
    for (const out of script(req, requests.length)) socket.send(out, rinfo.port, rinfo.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { port: socket.address().port, requests, close: () => socket.close() };
}

/** The long-term key of the lab's TURN credentials. */
export const key = longTermKey(TURN_USER, TURN_REALM, TURN_PASSWORD);

/** A 401 or 438 with REALM and NONCE. */
export const challenge = (req: StunMessage, code: number, nonce: string): Buffer =>
  buildMessage({
    method: req.method,
    class: 'error',
    transactionId: req.transactionId,
    attributes: [A.errorCode(code, code === 438 ? 'Stale Nonce' : 'Unauthorized'), A.realm(TURN_REALM), A.nonce(nonce)],
  });

/** A success signed with the key, with relayed and mapped addresses and a lifetime (what an Allocate gets). */
export const allocated = (req: StunMessage, signingKey = key): Buffer =>
  buildMessage({
    method: req.method,
    class: 'success',
    transactionId: req.transactionId,
    attributes: [
      A.xorRelayedAddress({ family: 'IPv4', address: '127.0.0.1', port: 50000 }),
      A.xorMappedAddress({ family: 'IPv4', address: '127.0.0.1', port: 40000 }),
      A.lifetime(600),
    ],
    integrity: signingKey,
  });
