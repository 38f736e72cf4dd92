/**
 * A Telegram call reflector for the lab, written from libtgvoip's published mock
 * (telegramdesktop/libtgvoip tests/MockReflector.cpp, debda1aa 2020-01-21), not from callprobe's
 * codec (src/protocol/tg-reflector.ts), so that a bug shared by both ends cannot pass:
 *
 * - every datagram of at least 32 bytes is handled; the sender's address is kept for its side of
 *   the call, which the low bit of the tag's byte 15 names;
 * - bytes 16-27 all FF and bytes 28-31 FF FF FF FF (int32 -1): a keepalive, dropped;
 * - bytes 16-27 all FF and bytes 28-31 FE FF FF FF (int32 -2): answered with the 64-byte
 *   UdpReflectorSelfInfo (packed, little-endian as the mock writes it from x86 memory): the
 *   request's first 16 bytes, FF x 12, 0xc01572c7, time(NULL), the request's bytes 32-39, the
 *   sender's IPv4 as an IPv4-mapped IPv6 address, the sender's port as a uint32;
 * - anything else is relayed to the other side of the same call (tags with the same first 8 bytes),
 *   with bit 0 of byte 15 flipped, once that side has been seen.
 *
 * One departure, as a switch: `--answer registered` answers only tags given with `--register`
 * (the mock answers any tag; whether Telegram's reflectors do for a tag they never issued is not
 * published), to play a reflector that ignores strangers.
 *
 *   node --import tsx test/lab/servers/tg-reflector.ts --host 198.18.2.2 --port 596 [--port 597 ...]
 *        [--answer any|registered] [--register <32 hex digits> ...]
 *
 * Prints `READY {...}` when listening and `EVENT {"event":"hello","tag":...,"answered":...}` per
 * hello (the startNodeServer protocol of servers/echo-server.ts).
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { isIPv4 } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export interface MockReflectorOptions {
  host: string;
  ports: number[];
  /** `any` as the published mock; `registered`: only these tags (hex) get an answer. */
  answer?: 'any' | 'registered';
  registered?: string[];
  onHello?: (event: { tag: string; answered: boolean; from: string }) => void;
}

export interface MockReflector {
  ports: number[];
  close(): Promise<void>;
}

const SELF_INFO = 0xc01572c7;

export async function startMockReflector(o: MockReflectorOptions): Promise<MockReflector> {
  const sockets: Socket[] = [];
  // Per call (first 8 tag bytes) and side (byte 15, bit 0): the address last seen.
  const sides = new Map<string, RemoteInfo>();
  const registered = new Set((o.registered ?? []).map((t) => t.toLowerCase()));
  for (const port of o.ports) {
    const socket = createSocket(o.host.includes(':') ? 'udp6' : 'udp4');
    socket.on('message', (msg, from) => {
      if (msg.length < 32) return;
      const tag = msg.subarray(0, 16);
      const call = tag.subarray(0, 8).toString('hex');
      const side = tag[15]! & 1;
      sides.set(`${call}/${side}`, from);
      const special = msg.subarray(16, 28).every((b) => b === 0xff);
      const tlid = msg.readInt32LE(28);
      if (special && tlid === -1) return;
      if (special && tlid === -2) {
        const answered = o.answer !== 'registered' || registered.has(tag.toString('hex'));
        o.onHello?.({ tag: tag.toString('hex'), answered, from: `${from.address}:${from.port}` });
        if (!answered) return;
        const reply = Buffer.alloc(64);
        tag.copy(reply, 0);
        reply.fill(0xff, 16, 28);
        reply.writeUInt32LE(SELF_INFO, 28);
        reply.writeInt32LE(Math.floor(Date.now() / 1000), 32);
        msg.copy(reply, 36, 32, 40);
        if (isIPv4(from.address)) {
          // my_ip: my_ip_padding1 (8 zero bytes), my_ip_padding2 = 0xFFFF0000 (LE: 00 00 FF FF), then sin_addr.
          reply.writeUInt32LE(0xffff0000, 52);
          for (const [i, octet] of from.address.split('.').entries()) reply[56 + i] = Number(octet);
        }
        reply.writeUInt32LE(from.port, 60);
        socket.send(reply, from.port, from.address);
        return;
      }
      const other = sides.get(`${call}/${side ^ 1}`);
      if (!other) return;
      const relayed = Buffer.from(msg);
      relayed[15] = relayed[15]! ^ 1;
      socket.send(relayed, other.port, other.address);
    });
    socket.bind(port, o.host);
    await once(socket, 'listening');
    sockets.push(socket);
  }
  return {
    ports: sockets.map((s) => s.address().port),
    close: async () => {
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string', multiple: true },
      answer: { type: 'string', default: 'any' },
      register: { type: 'string', multiple: true },
    },
  });
  if (!values.host || !values.port?.length) throw new Error('--host and at least one --port are required');
  const reflector = await startMockReflector({
    host: values.host,
    ports: values.port.map(Number),
    answer: values.answer === 'registered' ? 'registered' : 'any',
    registered: values.register ?? [],
    onHello: (e) => console.log(`EVENT ${JSON.stringify({ event: 'hello', ...e })}`),
  });
  console.log(`READY ${JSON.stringify({ listeners: reflector.ports.map((port) => ({ name: String(port), port })) })}`);
  process.on('SIGTERM', () => void reflector.close().then(() => process.exit(0)));
}
