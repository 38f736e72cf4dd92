import { randomBytes } from 'node:crypto';
import { hexPrefix, roundMs } from '../../evidence.js';
import { ProbeFailure } from '../../failure.js';
import { runPaced } from '../../media/pacer.js';
import type { Conversation } from '../../net/conversation.js';
import { STREAM_PROOF_LENGTH, downloads, refusalReason, uploads, type StreamDirection, type StreamRefusalReason, type StreamRequest } from '../../protocol/reflector.js';
import { RecordReader } from '../../protocol/stream-records.js';
import type { StreamCutoff, StreamEvidence, StreamIo, StreamPlan, UploadEvidence } from './evidence.js';
import { FlowMeter, UploadLedger } from './flow.js';

/** How often the phase reads the flow's counters (under TLS they move without events) and its stall clock. */
const TICK_MS = 10;

const REFUSAL_TEXT: Readonly<Record<StreamRefusalReason, string>> = {
  too_large: 'more bytes than its streamMaxBytes',
  rate_limited: 'its streamsPerMinute for this source are used up',
};

/**
 * One stream test over an open conversation: the request is already sent. Reads the reply (the
 * proof, then raw bytes or records), sends the upload once the proof came, and watches each
 * direction for a stall. Resolves when every byte due arrived; throws the failure otherwise.
 */
export class StreamRun {
  private head = Buffer.alloc(0);
  private proofAtMs: number | null = null;
  private anyByte = false;
  private streamBytes = 0;
  private records: RecordReader | null = null;
  private readonly upload: UploadEvidence | null;
  private ledger: UploadLedger | null = null;
  private readonly requestAtMs: number;
  private readonly stopUpload = new AbortController();

  constructor(
    private readonly plan: StreamPlan,
    private readonly request: StreamRequest,
    private readonly key: Uint8Array,
    private readonly conversation: Conversation,
    private readonly flow: FlowMeter,
    private readonly io: StreamIo,
    private readonly ev: StreamEvidence,
  ) {
    this.requestAtMs = io.now();
    this.upload = uploads(plan.direction)
      ? { writeBytes: plan.writeBytes, writeIntervalMs: plan.writeIntervalMs, writes: 0, writtenBytes: 0, ackedBytes: 0, acks: 0, lastAckMs: null }
      : null;
    if (this.upload) ev.upload = this.upload;
    if (downloads(plan.direction)) Object.assign(ev, { streamBytes: 0, lastDataMs: null });
  }

  async run(): Promise<void> {
    let tick: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      tick = setInterval(() => {
        this.sample();
        const failure = this.stall();
        if (failure) reject(failure);
      }, TICK_MS);
    });
    try {
      await Promise.race([this.read(), stalled]);
    } finally {
      clearInterval(tick);
      this.stopUpload.abort();
    }
    this.finish();
  }

  private async read(): Promise<void> {
    while (!this.complete()) {
      const chunk = await this.conversation.receive();
      this.sample();
      this.anyByte = true;
      this.take(chunk);
    }
  }

  /** Reads the flow's counters; bytes from the reflector are the download's progress, records or not. */
  private sample(): void {
    if (this.flow.sample() && downloads(this.plan.direction)) this.ev.lastDataMs = this.flow.lastReadAtMs;
  }

  private complete(): boolean {
    const down = !downloads(this.plan.direction) || this.streamBytes >= this.plan.bytes;
    const up = this.upload === null || this.upload.ackedBytes >= this.plan.bytes;
    return this.proofAtMs !== null && down && up;
  }

  private take(chunk: Buffer): void {
    let rest = chunk;
    if (this.proofAtMs === null) {
      const need = STREAM_PROOF_LENGTH - this.head.length;
      this.head = Buffer.concat([this.head, chunk.subarray(0, need)]);
      rest = chunk.subarray(need);
      if (this.head.length < STREAM_PROOF_LENGTH) return;
      this.checkProof();
    }
    if (rest.length === 0) return;
    if (this.records === null) return this.downloaded(rest.length);
    for (const record of this.records.push(rest)) {
      if (record.kind === 'data') this.downloaded(record.bytes);
      else this.acknowledged(record.received);
    }
  }

  private checkProof(): void {
    const refusal = refusalReason(this.head, this.request);
    if (refusal) throw new ProbeFailure('proto_error', `the reflector refused the stream request: ${REFUSAL_TEXT[refusal]}`, { refusal });
    if (!this.head.equals(this.request.proof)) {
      throw new ProbeFailure('proto_mismatch', 'the reply does not start with the reflector’s proof for our request: something else answered', {
        replyHeadHex: hexPrefix(this.head),
      });
    }
    this.ev.proofVerified = true;
    this.proofAtMs = this.io.now();
    if (this.plan.direction !== 'download') this.records = new RecordReader(this.key, this.request.tag);
    if (this.upload) void this.sendUpload(this.upload).catch(() => {});
  }

  private downloaded(bytes: number): void {
    const due = downloads(this.plan.direction) ? this.plan.bytes - this.streamBytes : 0;
    this.streamBytes += Math.min(bytes, due);
    if (bytes > due) this.ev.extraBytes = ((this.ev.extraBytes as number | undefined) ?? 0) + bytes - due;
    if (downloads(this.plan.direction)) this.ev.streamBytes = this.streamBytes;
  }

  private acknowledged(received: number): void {
    const up = this.upload;
    if (!up || received < up.ackedBytes || received > up.writtenBytes) {
      throw new ProbeFailure(
        'proto_mismatch',
        `the reflector acknowledged ${received} bytes of an upload of which ${up?.writtenBytes ?? 0} were written and ${up?.ackedBytes ?? 0} acknowledged before`,
      );
    }
    up.acks++;
    if (received > up.ackedBytes) {
      up.ackedBytes = received;
      up.lastAckMs = this.io.now();
    }
  }

  /** The N upload bytes in paced writes of writeBytes (TCP_NODELAY: each normally its own segment). */
  private async sendUpload(up: UploadEvidence): Promise<void> {
    const { bytes, writeBytes, writeIntervalMs } = this.plan;
    const ledger = (this.ledger = new UploadLedger(this.io.tcp, this.io.encrypted));
    const count = Math.ceil(bytes / writeBytes);
    up.pacing = await runPaced({ count, intervalMs: writeIntervalMs, signal: AbortSignal.any([this.io.signal, this.stopUpload.signal]) }, (i) => {
      const size = Math.min(writeBytes, bytes - i * writeBytes);
      up.writes++;
      up.writtenBytes += size;
      const total = up.writtenBytes;
      this.conversation.send(randomBytes(size), () => ledger.written(total));
    });
  }

  /**
   * The failure if the stream stalled, else null. A direction stalls when bytes are still due that
   * way and none came for stallMs: from the reflector, any byte of the flow; of the upload, an
   * acknowledgement. Acks travel from the reflector, so when that way falls silent the upload's
   * fate cannot be seen either (a both-way test then reports both). The upload alone is named only
   * when it is seen to stop while the reflector's bytes go on arriving: for stallMs / 2 after the
   * last ack, which a flow frozen both ways, whose last ack and last data come together, never shows.
   */
  private stall(): ProbeFailure | null {
    const now = this.io.now();
    const { stallMs, bytes } = this.plan;
    if (!this.anyByte) {
      if (now - this.requestAtMs < stallMs) return null;
      return new ProbeFailure('generic_timeout_error', `no byte of the stream came back within ${stallMs} ms of the request`, { waitedMs: roundMs(now - this.requestAtMs) });
    }
    const lastRead = this.flow.lastReadAtMs;
    // Before the proof, the reply is due whatever the direction.
    const downDue = this.proofAtMs === null || (downloads(this.plan.direction) && this.streamBytes < bytes);
    const up = this.proofAtMs !== null && this.upload !== null && this.upload.ackedBytes < bytes ? this.upload : null;
    if (downDue && now - lastRead >= stallMs) return this.cutoff(up ? 'both' : 'download');
    if (!up) return null;
    const lastAck = up.lastAckMs ?? (this.proofAtMs as number);
    if (now - lastAck < stallMs) return null;
    return !downDue || lastRead - lastAck >= stallMs / 2 ? this.cutoff('upload') : null;
  }

  private cutoff(direction: StreamDirection): ProbeFailure {
    const ev = this.ev;
    const cutoff: StreamCutoff = { direction };
    if (downloads(this.plan.direction) || this.proofAtMs === null) {
      cutoff.down = { tcpPayloadBytes: this.flow.readBytes, streamBytes: this.streamBytes, lastAtMs: this.flow.lastReadAtMs };
    }
    const up = this.upload;
    if (up) {
      const last = up.writtenBytes === this.plan.bytes && up.ackedBytes === this.plan.bytes;
      cutoff.up = {
        tcpPayloadBytes: this.io.tcp.bytesWritten,
        writes: up.writes,
        writtenBytes: up.writtenBytes,
        ackedBytes: up.ackedBytes,
        ackedTcpPayloadBytes: this.ledger?.tcpOffsetOf(up.ackedBytes) ?? null,
        ackedWrites: last ? up.writes : Math.floor(up.ackedBytes / this.plan.writeBytes),
        lastAckMs: up.lastAckMs,
      };
    }
    ev.cutoff = cutoff;
    const stopped = direction === 'upload' ? 'upload' : 'download';
    if (stopped === 'download' && cutoff.down) {
      ev.cutoffAtBytes = cutoff.down.tcpPayloadBytes;
      ev.cutoffAtMs = cutoff.down.lastAtMs;
    } else if (cutoff.up) {
      ev.cutoffAtBytes = cutoff.up.ackedTcpPayloadBytes ?? undefined;
      ev.cutoffAtMs = cutoff.up.lastAckMs ?? this.proofAtMs;
    }
    return new ProbeFailure('stream_cutoff', this.describe(cutoff));
  }

  private describe(c: StreamCutoff): string {
    const parts: string[] = [];
    if (c.down && c.direction !== 'upload') {
      parts.push(`data from the reflector stopped after ${c.down.tcpPayloadBytes} bytes of TCP payload (${c.down.streamBytes} of ${this.plan.bytes} stream bytes), the last at ${c.down.lastAtMs} ms`);
    }
    if (c.up && c.direction !== 'download') {
      const at = c.up.ackedTcpPayloadBytes === null ? '' : ` (the flow's first ${c.up.ackedTcpPayloadBytes} bytes of TCP payload)`;
      parts.push(`the reflector acknowledged ${c.up.ackedBytes} of ${this.plan.bytes} upload bytes${at}, ${c.up.writtenBytes} written`);
    }
    return `${parts.join('; ')}; nothing for ${this.plan.stallMs} ms, no FIN, no RST`;
  }

  private finish(): void {
    const { bytes } = this.plan;
    const throughput = (fromMs: number, toMs: number | null) => (toMs !== null && toMs > fromMs ? Math.round((8 * bytes) / ((toMs - fromMs) / 1000)) : undefined);
    if (downloads(this.plan.direction)) {
      const bps = throughput(this.requestAtMs, this.flow.lastReadAtMs);
      if (bps !== undefined) this.ev.throughputBps = bps;
    }
    if (this.upload) {
      const bps = throughput(this.proofAtMs ?? this.requestAtMs, this.upload.lastAckMs);
      if (bps !== undefined) this.upload.throughputBps = bps;
    }
  }
}
