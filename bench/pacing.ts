/**
 * The media sender's pacing error (actual minus scheduled send time) and its CPU cost, for
 * callprobe's pacer (src/media/pacer.ts) against a naive `setInterval` sender, in the same run:
 * 20 concurrent streams at 50 packets/s, each packet a real media packet (HMAC and all) sent over
 * UDP to a sink on loopback, so the CPU figure includes what a real stream does per packet.
 *
 * The error is actual minus scheduled send time, the schedule being start + i × interval. Most of
 * setInterval's error is drift: Node re-arms an interval from when its callback ran, so every
 * late tick delays all the later ones. The pacer's rows show its two modes (src/media/pacer.ts).
 *
 *   node --import tsx bench/pacing.ts [--streams 20] [--seconds 10] [--pps 50]
 *
 * Loopback only: it never sends anything beyond 127.0.0.1.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PacerClock, pacingReport, runPaced, type PacerMode, type PacingReport } from '../src/media/pacer.js';
import { cryptoRng, encodeMediaPacket, opusLikeSize } from '../src/protocol/media-packet.js';

export interface PacingRow {
  readonly sender: 'pacer (worker)' | 'pacer (spin)' | 'setInterval';
  readonly streams: number;
  readonly pps: number;
  readonly seconds: number;
  readonly pacing: PacingReport;
  /** User + system CPU seconds per second of one stream. */
  readonly cpuMsPerStreamSecond: number;
}

export interface PacingBenchResult {
  /** callprobe's pacer (its default, worker mode), the spin variant, and the naive sender. */
  readonly rows: readonly [PacingRow, PacingRow, PacingRow];
  /** setInterval's p99 over the pacer's p99: how many times tighter callprobe's schedule is. */
  readonly p99Ratio: number;
  /** The pacer's CPU per stream-second over setInterval's. */
  readonly cpuRatio: number;
}

const KEY = Buffer.alloc(32, 7);

function packetSender(sink: { port: number }, socket: Socket, flowId: number): (seq: number) => void {
  return (seq) => {
    const pkt = encodeMediaPacket({
      shape: 'rtp',
      flowId,
      seq,
      sendTimeUs: Math.round(performance.now() * 1000),
      payloadSize: opusLikeSize(cryptoRng),
      key: KEY,
      rng: cryptoRng,
    });
    socket.send(pkt, sink.port, '127.0.0.1');
  };
}

/** `streams` setInterval senders; the error of packet i is its send time minus start + i·interval. */
function naiveStream(count: number, intervalMs: number, send: (seq: number) => void): Promise<Float64Array> {
  return new Promise((resolve) => {
    const errors = new Float64Array(count);
    const start = performance.now();
    let i = 0;
    const timer = setInterval(() => {
      errors[i] = performance.now() - (start + (i + 1) * intervalMs);
      send(i);
      if (++i === count) {
        clearInterval(timer);
        resolve(errors);
      }
    }, intervalMs);
  });
}

async function measure(
  sender: PacingRow['sender'],
  opts: { streams: number; pps: number; seconds: number },
  sink: { port: number },
): Promise<PacingRow> {
  const intervalMs = 1000 / opts.pps;
  const count = Math.round(opts.seconds * opts.pps);
  const sockets = await Promise.all(
    Array.from({ length: opts.streams }, async () => {
      const s = createSocket('udp4');
      s.bind(0, '127.0.0.1');
      await once(s, 'listening');
      return s;
    }),
  );
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let all: number[] = [];
  if (sender !== 'setInterval') {
    const clock = new PacerClock({ mode: (sender === 'pacer (worker)' ? 'worker' : 'spin') satisfies PacerMode });
    // Streams start at random phases, as independent calls do.
    const reports = await Promise.all(
      sockets.map(async (s, k) => {
        const send = packetSender(sink, s, k + 1);
        const errors: number[] = [];
        const startMs = performance.now() + 5 + Math.random() * intervalMs;
        await runPaced({ count, intervalMs, startMs, clock }, (i, scheduled) => {
          errors.push(performance.now() - scheduled);
          send(i);
        });
        return errors;
      }),
    );
    all = reports.flat();
  } else {
    const reports = await Promise.all(
      sockets.map(async (s, k) => {
        await new Promise((r) => setTimeout(r, Math.random() * intervalMs));
        return naiveStream(count, intervalMs, packetSender(sink, s, k + 1));
      }),
    );
    all = reports.flatMap((r) => Array.from(r));
  }
  const wallSeconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  for (const s of sockets) s.close();
  const cpuMs = (cpu.user + cpu.system) / 1000;
  return {
    sender,
    streams: opts.streams,
    pps: opts.pps,
    seconds: opts.seconds,
    pacing: pacingReport(all),
    cpuMsPerStreamSecond: cpuMs / (opts.streams * wallSeconds),
  };
}

/** Both senders, one after the other, in this process. */
export async function benchPacing(opts: { streams?: number; pps?: number; seconds?: number } = {}): Promise<PacingBenchResult> {
  const o = { streams: opts.streams ?? 20, pps: opts.pps ?? 50, seconds: opts.seconds ?? 10 };
  const sink = createSocket('udp4');
  sink.on('message', () => {});
  sink.bind(0, '127.0.0.1');
  await once(sink, 'listening');
  try {
    const target = { port: sink.address().port };
    // Warm up (JIT, first allocations) so that the first sender measured does not pay for it.
    for (const sender of ['pacer (worker)', 'pacer (spin)', 'setInterval'] as const) await measure(sender, { ...o, seconds: 1 }, target);
    const pacer = await measure('pacer (worker)', o, target);
    const spin = await measure('pacer (spin)', o, target);
    const naive = await measure('setInterval', o, target);
    return {
      rows: [pacer, spin, naive],
      p99Ratio: naive.pacing.p99Ms / pacer.pacing.p99Ms,
      cpuRatio: pacer.cpuMsPerStreamSecond / naive.cpuMsPerStreamSecond,
    };
  } finally {
    sink.close();
  }
}

export function formatPacing(r: PacingBenchResult): string {
  const head = `sender            streams  pps  seconds  p50 ms   p99 ms   max ms   >1ms late  CPU ms per stream-second`;
  const lines = r.rows.map(
    (row) =>
      `${row.sender.padEnd(17)} ${String(row.streams).padStart(7)}  ${String(row.pps).padStart(3)}  ${String(row.seconds).padStart(7)}  ${row.pacing.p50Ms.toFixed(3).padStart(6)}  ${row.pacing.p99Ms.toFixed(3).padStart(7)}  ${row.pacing.maxMs.toFixed(3).padStart(7)}  ${String(row.pacing.lateOver1Ms).padStart(9)}  ${row.cpuMsPerStreamSecond.toFixed(2).padStart(8)}`,
  );
  return [
    head,
    ...lines,
    `ratio: setInterval p99 / pacer (worker) p99 = ${r.p99Ratio.toFixed(1)}; pacer (worker) CPU / setInterval CPU = ${r.cpuRatio.toFixed(2)}`,
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { streams: { type: 'string' }, pps: { type: 'string' }, seconds: { type: 'string' } } });
  const result = await benchPacing({
    ...(values.streams ? { streams: Number(values.streams) } : {}),
    ...(values.pps ? { pps: Number(values.pps) } : {}),
    ...(values.seconds ? { seconds: Number(values.seconds) } : {}),
  });
  console.log(`\nMedia pacing: ${result.rows[0].streams} concurrent streams at ${result.rows[0].pps} packets/s (loopback sink)`);
  console.log(formatPacing(result));
}
