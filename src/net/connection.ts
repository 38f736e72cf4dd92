import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { WebSocket } from 'ws';

/**
 * An open connection to a target, as `tcp` opens it and `tls` and `websocket` wrap it: what a
 * protocol phase talks over. Each wrapping phase hands on a new value; the sockets stay the
 * runner's to close when the run ends.
 */
export interface Connection {
  /** The TCP socket under everything: bytes on the wire are counted here. */
  readonly tcp: Socket;
  /** The byte stream to talk over: the TCP socket, or TLS over it once `tls` ran. */
  readonly stream: Socket | TLSSocket;
  /** The WebSocket over that stream once `websocket` ran (its binary messages form one byte stream), else null. */
  readonly ws: WebSocket | null;
  readonly transport: 'tcp' | 'tls' | 'ws' | 'wss';
  /** The endpoint actually used: the address and port dialled, or the URL once a WebSocket is open. */
  readonly endpoint: string;
  /** Where the TCP connection goes and comes from, as dialled (kept: a closed socket forgets it). */
  readonly remote: { readonly address: string; readonly port: number };
  readonly local: { readonly address: string; readonly port: number };
}

/** The same connection with a new layer on top (TLS, a WebSocket). */
export function wrapConnection(base: Connection, layer: Partial<Pick<Connection, 'stream' | 'ws' | 'transport' | 'endpoint'>>): Connection {
  return { ...base, ...layer };
}

/**
 * A socket can fail while no phase listens (between two phases, or after the last one): without a
 * listener Node would throw the 'error' event and end the process. The error stays on the socket
 * (`destroyed`, `errored`), where the next conversation over it finds it.
 */
export function absorbErrors(emitter: NodeJS.EventEmitter): void {
  if (absorbing.has(emitter)) return;
  absorbing.add(emitter);
  emitter.on('error', () => {});
}

const absorbing = new WeakSet<NodeJS.EventEmitter>();
