/**
 * A reference client for lab tests, run in the client namespace:
 *
 *   node --import tsx test/lab/clients/lab-client.ts <tcp|udp|dns|tls|ws> --flag value ...
 *
 * It does one exchange and prints one JSON line: `{"ok":true,...}` or `{"ok":false,"code":...}`
 * with the Node error code (ECONNREFUSED, ETIMEDOUT, CERT_HAS_EXPIRED, ...). Exit status is 0
 * either way: the JSON is the result. It checks a lab scenario independently of callprobe.
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import * as dnsPacket from 'dns-packet';
import WebSocket from 'ws';

type Flags = Map<string, string>;

function parseFlags(argv: string[]): Flags {
  const flags: Flags = new Map();
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]!;
    if (!key.startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument near ${key}`);
    flags.set(key.slice(2), argv[i + 1]!);
  }
  return flags;
}

function need(f: Flags, key: string): string {
  const v = f.get(key);
  if (v === undefined) throw new Error(`--${key} is required`);
  return v;
}

function payload(f: Flags): Buffer | null {
  if (f.has('send-hex')) return Buffer.from(f.get('send-hex')!, 'hex');
  if (f.has('send')) return Buffer.from(f.get('send')!, 'utf8');
  return null;
}

function print(o: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}
const errCode = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/** Collects a stream's bytes until `expect` bytes, the peer's FIN, or `idleMs` of silence. */
function collect(socket: Socket, expect: number | null, idleMs: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let idle = setTimeout(finish, idleMs);
    function finish() {
      clearTimeout(idle);
      resolve(Buffer.concat(chunks));
    }
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      total += c.length;
      clearTimeout(idle);
      if (expect !== null && total >= expect) finish();
      else idle = setTimeout(finish, idleMs);
    });
    socket.on('end', finish);
    socket.on('close', finish);
  });
}

async function tcp(f: Flags): Promise<void> {
  const timeoutMs = Number(f.get('timeout') ?? 3000);
  const started = Date.now();
  const socket = tcpConnect({ host: need(f, 'host'), port: Number(need(f, 'port')) });
  const connected = await new Promise<true | string>((resolve) => {
    const timer = setTimeout(() => resolve('ETIMEDOUT'), timeoutMs);
    socket.once('connect', () => (clearTimeout(timer), resolve(true)));
    socket.once('error', (err) => (clearTimeout(timer), resolve(errCode(err))));
  });
  if (connected !== true) {
    socket.destroy();
    return print({ ok: false, code: connected, elapsedMs: Date.now() - started });
  }
  const connectMs = Date.now() - started;
  const local = socket.localAddress ?? null; // gone once the socket is destroyed
  let error: string | null = null;
  socket.on('error', (err) => (error = errCode(err)));
  const data = payload(f);
  const expect = f.has('expect-bytes') ? Number(f.get('expect-bytes')) : data ? data.length : null;
  const got = collect(socket, expect, Number(f.get('idle') ?? 500));
  if (data) socket.write(data);
  const received = await got;
  socket.destroy();
  print({ ok: error === null, ...(error ? { code: error } : {}), connectMs, local, receivedHex: received.toString('hex') });
}

async function udp(f: Flags): Promise<void> {
  const host = need(f, 'host');
  const port = Number(need(f, 'port'));
  const count = Number(f.get('count') ?? 1);
  const data = payload(f) ?? Buffer.from('ping');
  const sock = createSocket('udp4');
  let received = 0;
  sock.on('message', () => received++);
  sock.on('error', () => {});
  for (let i = 0; i < count; i++) {
    sock.send(data, port, host);
    await new Promise((r) => setTimeout(r, Number(f.get('interval') ?? 20)));
  }
  await new Promise((r) => setTimeout(r, Number(f.get('wait') ?? 500)));
  sock.close();
  print({ ok: received > 0, sent: count, received });
}

async function dns(f: Flags): Promise<void> {
  const server = need(f, 'server');
  const port = Number(f.get('port') ?? 53);
  const timeoutMs = Number(f.get('timeout') ?? 2000);
  const sock = createSocket('udp4');
  const id = Math.floor(Math.random() * 0xffff);
  const query = dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: (f.get('type') ?? 'A') as 'A', name: need(f, 'name') }],
  });
  const answer = await new Promise<Buffer | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs);
    sock.on('message', (msg) => {
      if (msg.readUInt16BE(0) !== id) return;
      clearTimeout(timer);
      resolve(msg);
    });
    sock.send(query, port, server);
  });
  sock.close();
  if (!answer) return print({ ok: false, code: 'ETIMEDOUT' });
  // @types/dns-packet lacks rcode and the per-type data union: read them loosely.
  const res = dnsPacket.decode(answer) as { rcode?: string; answers?: Array<{ type: string; data?: unknown }> };
  const answers = (res.answers ?? []).map((a) => ({
    type: a.type,
    data: Buffer.isBuffer(a.data) ? a.data.toString('hex') : Array.isArray(a.data) ? a.data.map((d) => String(d)) : a.data,
  }));
  print({ ok: true, rcode: res.rcode, answers });
}

async function tls(f: Flags): Promise<void> {
  const timeoutMs = Number(f.get('timeout') ?? 3000);
  const alpn = f.get('alpn')?.split(',');
  const socket = tlsConnect({
    host: need(f, 'host'),
    port: Number(need(f, 'port')),
    servername: f.get('servername'),
    ...(f.has('ca') ? { ca: readFileSync(f.get('ca')!) } : {}),
    ...(alpn ? { ALPNProtocols: alpn } : {}),
  });
  const ready = await new Promise<true | string>((resolve) => {
    const timer = setTimeout(() => resolve('ETIMEDOUT'), timeoutMs);
    socket.once('secureConnect', () => (clearTimeout(timer), resolve(true)));
    socket.once('error', (err) => (clearTimeout(timer), resolve(errCode(err))));
  });
  if (ready !== true) {
    socket.destroy();
    return print({ ok: false, code: ready });
  }
  const data = payload(f);
  const got = collect(socket, data ? data.length : null, Number(f.get('idle') ?? 300));
  if (data) socket.write(data);
  const received = await got;
  const result = { ok: true, authorized: socket.authorized, alpn: socket.alpnProtocol || null, protocol: socket.getProtocol(), receivedHex: received.toString('hex') };
  socket.destroy();
  print(result);
}

async function ws(f: Flags): Promise<void> {
  const timeoutMs = Number(f.get('timeout') ?? 3000);
  const socket = new WebSocket(need(f, 'url'), {
    handshakeTimeout: timeoutMs,
    ...(f.has('ca') ? { ca: readFileSync(f.get('ca')!) } : {}),
  });
  const opened = await new Promise<true | Record<string, unknown>>((resolve) => {
    socket.once('open', () => resolve(true));
    socket.once('unexpected-response', (_req, res) => {
      resolve({ ok: false, code: 'unexpected-response', status: res.statusCode });
      res.resume();
      socket.terminate();
    });
    socket.once('error', (err) => resolve({ ok: false, code: errCode(err) }));
  });
  if (opened !== true) return print(opened);
  const data = payload(f) ?? Buffer.from([0xca, 0x11]);
  const echo = await new Promise<{ data: Buffer; binary: boolean } | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), timeoutMs);
    socket.once('message', (msg, isBinary) => (clearTimeout(timer), resolve({ data: msg as Buffer, binary: isBinary })));
    socket.send(data, { binary: true });
  });
  socket.close();
  print(echo ? { ok: true, status: 101, receivedHex: echo.data.toString('hex'), binary: echo.binary } : { ok: false, code: 'ETIMEDOUT', status: 101 });
}

const commands: Record<string, (f: Flags) => Promise<void>> = { tcp, udp, dns, tls, ws };

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  const fn = cmd ? commands[cmd] : undefined;
  if (!fn) throw new Error(`usage: lab-client.ts <${Object.keys(commands).join('|')}> --flag value ...`);
  await fn(parseFlags(rest));
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`lab-client: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(2);
});
